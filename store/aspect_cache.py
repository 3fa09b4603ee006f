"""Persistent cache of aspect selections, keyed by (query, selector model, template hash).

A resumed or repeated run never pays twice for the same selection, and a different
selector model or an edited template never reuses a stale one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from drpo.store.sqlite_kv import SqliteKV


def aspect_cache_key(query: str, selector_model: str, template_hash: str) -> str:
    payload = json.dumps([query, selector_model, template_hash])
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class AspectCache:
    def __init__(self, path: Path) -> None:
        self._kv = SqliteKV(path, "aspect_selections")

    def get(self, query: str, selector_model: str, template_hash: str) -> dict[str, Any] | None:
        return self._kv.get(aspect_cache_key(query, selector_model, template_hash))

    def put(self, query: str, selector_model: str, template_hash: str, selection: dict[str, Any]) -> None:
        self._kv.put(aspect_cache_key(query, selector_model, template_hash), selection)

    def __len__(self) -> int:
        return len(self._kv)

    def close(self) -> None:
        self._kv.close()
