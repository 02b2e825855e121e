"""What can go wrong in the memory bento, as the kit's errors (`ragyard.kit.errors`, answered in OpenAI's
shape by `ragyard.kit.serving`). The extraction worker retries `DependencyDown` and gives up on the rest."""

from __future__ import annotations

from ragyard.kit.errors import ServiceError, Unavailable


class DependencyDown(Unavailable):
    """A service the bento needs cannot answer now (503 with Retry-After); `dependency` names it (llm, safety,
    embedder, milvus, database, queue, store) for the retry metrics."""

    def __init__(self, dependency: str, message: str):
        super().__init__(f"{dependency} unavailable: {message}", retry_after_s=5)
        self.dependency = dependency


def invalid(message: str, param: str) -> ServiceError:
    return ServiceError(400, message, param=param)


def not_found(message: str, param: str) -> ServiceError:
    return ServiceError(404, message, param=param)


def too_large(message: str, param: str) -> ServiceError:
    return ServiceError(413, message, param=param)


def refused(message: str, param: str) -> ServiceError:
    """The safety policy blocks the text (a prompt injection, say): it is never stored."""
    return ServiceError(422, message, param=param, code="refused_by_safety")
