"""Optional second-stage scoring of search hits with a sentence-transformers CrossEncoder."""

from __future__ import annotations


class Reranker:
    def __init__(self, model_path: str, device: str = "cpu", batch_size: int = 32):
        from sentence_transformers import CrossEncoder  # heavy import, only when configured

        self.model_path = model_path
        self.batch_size = batch_size
        self._model = CrossEncoder(model_path, device=device)

    def scores(self, query: str, texts: list[str]) -> list[float]:
        if not texts:
            return []
        pairs = [(query, text) for text in texts]
        return [float(s) for s in self._model.predict(pairs, batch_size=self.batch_size, show_progress_bar=False)]
