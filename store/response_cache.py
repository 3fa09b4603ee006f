"""A persistent cache of model responses shared across runs (off by default).

Keys hold the provider, server, model, messages, parameters, seed and sample index, so re-running an
identical configuration costs nothing and the M samples of one request never collapse into one.
Storage is LangChain's SQLite LLM cache from langchain-community, with our key as its prompt.
"""

from __future__ import annotations

import json
import threading
import warnings
from pathlib import Path
from typing import Any

from langchain_core.outputs import Generation

CACHE_NAMESPACE = "drpo-response-cache/v1"


class ResponseCache:
    """JSON records by call key in a SQLite file; safe to share between threads and runs."""

    def __init__(self, path: Path) -> None:
        with warnings.catch_warnings():  # the package announces its sunset on import; the cache still works
            warnings.simplefilter("ignore", DeprecationWarning)
            from langchain_community.cache import SQLiteCache

        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._cache = SQLiteCache(database_path=str(path))
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, Any] | None:
        """The record stored under ``key``. Read from the cache's own table as data rather than through its
        lookup, which rebuilds LangChain objects from the stored text (and warns on every call that it will
        restrict which): the row is a serialized Generation whose text is our JSON record."""
        from sqlalchemy import select
        from sqlalchemy.orm import Session

        schema = self._cache.cache_schema
        query = (
            select(schema.response)
            .where(schema.prompt == key)
            .where(schema.llm == CACHE_NAMESPACE)
            .order_by(schema.idx)
        )
        with self._lock, Session(self._cache.engine) as session:
            row = session.execute(query).first()
        if row is None:
            return None
        stored = json.loads(row[0])
        text = stored.get("kwargs", {}).get("text") if isinstance(stored, dict) else None
        return dict(json.loads(text)) if isinstance(text, str) else None

    def put(self, key: str, record: dict[str, Any]) -> None:
        with self._lock:
            self._cache.update(key, CACHE_NAMESPACE, [Generation(text=json.dumps(record))])
