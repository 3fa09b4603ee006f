"""Persistent sentence embeddings, keyed by the embedding model and the text.

A second run over the same seed queries and ICL examples finds every vector here and never
loads the embedding model (torch and sentence-transformers cost seconds at start).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from drpo.store.sqlite_kv import SqliteKV


def embedding_key(model: str, text: str) -> str:
    return hashlib.sha256(f"{model}\n{text}".encode()).hexdigest()


class EmbeddingCache:
    """Vectors by (model, text) in ``STORE_DIR/embeddings.sqlite``."""

    def __init__(self, path: Path) -> None:
        self._kv = SqliteKV(path, "embeddings")

    def get_many(self, model: str, texts: list[str]) -> dict[str, list[float]]:
        keys = {embedding_key(model, text): text for text in texts}
        return {keys[key]: vector for key, vector in self._kv.get_many(list(keys)).items()}

    def put_many(self, model: str, vectors: dict[str, list[float]]) -> None:
        self._kv.put_many({embedding_key(model, text): vector for text, vector in vectors.items()})

    def __len__(self) -> int:
        return len(self._kv)

    def close(self) -> None:
        self._kv.close()
