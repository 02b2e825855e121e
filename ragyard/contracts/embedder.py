"""Wire schemas of the embedder bento: the one place that defines its HTTP contract."""

from __future__ import annotations

from pydantic import BaseModel, Field


class EmbedRequest(BaseModel):
    texts: list[str] = Field(min_length=1, description="Texts to embed; bounded by the service's settings.")
    normalize: bool = Field(default=True, description="Scale each vector to unit length.")


class EmbedResponse(BaseModel):
    model: str
    dim: int
    embeddings: list[list[float]]
