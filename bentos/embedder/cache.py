"""A bounded LRU cache of embeddings, keyed by (model, normalize, sha256 of the text)."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

CacheKey = tuple[str, bool, str]


def cache_key(model: str, normalize: bool, text: str) -> CacheKey:
    return (model, normalize, hashlib.sha256(text.encode("utf-8")).hexdigest())


class EmbeddingCache:
    """Thread-safe LRU of vectors; `capacity` 0 disables it. Hits and misses go to the callbacks."""

    def __init__(
        self,
        capacity: int,
        on_hits: Callable[[int], None] = lambda n: None,
        on_misses: Callable[[int], None] = lambda n: None,
    ):
        self.capacity = capacity
        self._entries: OrderedDict[CacheKey, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._on_hits = on_hits
        self._on_misses = on_misses

    def __len__(self) -> int:
        return len(self._entries)

    def get_many(self, keys: list[CacheKey]) -> list[np.ndarray | None]:
        found: list[np.ndarray | None] = []
        with self._lock:
            for key in keys:
                vector = self._entries.get(key)
                if vector is not None:
                    self._entries.move_to_end(key)
                found.append(vector)
        hits = sum(v is not None for v in found)
        if hits:
            self._on_hits(hits)
        if len(keys) - hits:
            self._on_misses(len(keys) - hits)
        return found

    def put_many(self, items: list[tuple[CacheKey, np.ndarray]]) -> None:
        if self.capacity <= 0:
            return
        with self._lock:
            for key, vector in items:
                self._entries[key] = vector
                self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
