"""Per-run journal of finished model calls, keyed by the request's content and sample index.

When a node re-runs after a crash or Ctrl-C, every call it had already finished is answered
from here, so a resume never repeats a finished model call. Full answers live here too,
so checkpoints can hold ids instead of long texts.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any, Protocol

from drpo.store.sqlite_kv import SqliteKV


def call_key(payload: dict[str, Any]) -> str:
    """Stable key for a request: role, model, inputs, parameters and sample index."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode("utf-8")).hexdigest()


class KeyValue(Protocol):
    def get(self, key: str) -> Any | None: ...

    def put(self, key: str, value: Any) -> None: ...

    def items(self) -> list[tuple[str, Any]]: ...

    def keys(self) -> list[str]: ...

    def close(self) -> None: ...


class CallJournal:
    """Finished calls and answers. The keys of the finished calls are read once, so the common case of a
    fresh run (a call not in the journal) costs no database read."""

    def __init__(self, calls: KeyValue, answers: KeyValue) -> None:
        self._calls = calls
        self._answers = answers
        self._finished: set[str] | None = None
        self._keys_lock = threading.Lock()

    def _finished_keys(self) -> set[str]:
        with self._keys_lock:
            if self._finished is None:
                self._finished = set(self._calls.keys())
            return self._finished

    @classmethod
    def sqlite(cls, path: Path) -> CallJournal:
        """The run directory's journal file (the default)."""
        return cls(SqliteKV(path, "calls"), SqliteKV(path, "answers"))

    @classmethod
    def postgres(cls, dsn: str, run_id: str) -> CallJournal:
        """The journal in the database, next to the checkpoints, for runs resumed on other machines."""
        from drpo.store.postgres import PostgresKV

        return cls(PostgresKV(dsn, run_id, "calls"), PostgresKV(dsn, run_id, "answers"))

    def get_call(self, key: str) -> dict[str, Any] | None:
        if key not in self._finished_keys():
            return None
        return self._calls.get(key)

    def put_call(self, key: str, record: dict[str, Any]) -> None:
        self._calls.put(key, record)
        self._finished_keys().add(key)

    def spent_by_role(self) -> dict[str, dict[str, int]]:
        """Token usage of every finished call of this run, per role (what a budget counts)."""
        spent: dict[str, dict[str, int]] = {}
        for _key, record in self._calls.items():
            role = record.get("role")
            if role is None:
                continue
            total = spent.setdefault(role, {})
            for name, value in record.get("usage", {}).items():
                total[name] = total.get(name, 0) + int(value)
        return spent

    def put_answer(self, answer_id: str, record: dict[str, Any]) -> None:
        self._answers.put(answer_id, record)

    def get_answer(self, answer_id: str) -> dict[str, Any]:
        record = self._answers.get(answer_id)
        if record is None:
            raise KeyError(f"answer {answer_id} not found in the run journal")
        return record

    def answers(self) -> list[tuple[str, dict[str, Any]]]:
        return self._answers.items()

    def copy_into(self, other: CallJournal) -> int:
        """Copy every finished call and answer (a fork starts with its source's history); returns the count."""
        copied = 0
        for key, record in self._calls.items():
            other.put_call(key, record)
            copied += 1
        for answer_id, record in self._answers.items():
            other.put_answer(answer_id, record)
            copied += 1
        return copied

    def close(self) -> None:
        self._calls.close()
        self._answers.close()
