"""A tiny durable key-value table in SQLite, safe across threads and processes."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from drpo.store.sqlite_files import connect_sqlite


class SqliteKV:
    """JSON values by string key; every write commits, so a crash loses nothing already written."""

    def __init__(self, path: Path, table: str) -> None:
        if not table.isidentifier():
            raise ValueError(f"bad table name {table!r}")
        self.path = path
        self._table = table
        self._lock = threading.Lock()
        self._conn, self.read_only = connect_sqlite(path)
        if not self.read_only:
            self._conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self._conn.commit()

    def get(self, key: str) -> Any | None:
        with self._lock:
            row = self._conn.execute(f"SELECT value FROM {self._table} WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._conn.execute(
                f"INSERT OR REPLACE INTO {self._table} (key, value) VALUES (?, ?)", (key, json.dumps(value))
            )
            self._conn.commit()

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        """The values of the keys present, in one query per 500 keys."""
        found: dict[str, Any] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    f"SELECT key, value FROM {self._table} WHERE key IN ({marks})", chunk
                ).fetchall()
                found.update((key, json.loads(value)) for key, value in rows)
        return found

    def put_many(self, values: dict[str, Any]) -> None:
        """Write several values in one transaction (skipped on a read-only file: a cache may stay cold)."""
        if self.read_only or not values:
            return
        with self._lock:
            self._conn.executemany(
                f"INSERT OR REPLACE INTO {self._table} (key, value) VALUES (?, ?)",
                [(key, json.dumps(value)) for key, value in values.items()],
            )
            self._conn.commit()

    def keys(self) -> list[str]:
        with self._lock:
            return [key for (key,) in self._conn.execute(f"SELECT key FROM {self._table}").fetchall()]

    def items(self) -> list[tuple[str, Any]]:
        with self._lock:
            rows = self._conn.execute(f"SELECT key, value FROM {self._table} ORDER BY rowid").fetchall()
        return [(key, json.loads(value)) for key, value in rows]

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute(f"SELECT COUNT(*) FROM {self._table}").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
