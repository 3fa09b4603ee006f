"""What each OpenAI-compatible server was found to support, remembered across runs in the store.

Today: whether a chat request with ``n`` returns ``n`` choices (vLLM does; some servers ignore it or
refuse it). One probe per server and model, then every later run reads the answer here.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from drpo.store.sqlite_kv import SqliteKV


def feature_key(feature: str, base_url: str, model: str) -> str:
    return json.dumps([feature, base_url.rstrip("/"), model])


class ServerFeatures:
    """``STORE_DIR/server_features.sqlite``: feature -> bool per (server URL, model)."""

    def __init__(self, path: Path) -> None:
        self._kv = SqliteKV(path, "server_features")

    def get(self, feature: str, base_url: str, model: str) -> bool | None:
        found = self._kv.get(feature_key(feature, base_url, model))
        return None if found is None else bool(found["supported"])

    def put(self, feature: str, base_url: str, model: str, supported: bool) -> None:
        self._kv.put(feature_key(feature, base_url, model), {"supported": supported, "probed_at": time.time()})

    def close(self) -> None:
        self._kv.close()
