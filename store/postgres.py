"""Postgres pieces for shared and remote runs: connections, a key-value journal, the run registry, a run lock.

With a Postgres checkpointer, everything a resume needs lives in the database (checkpoints,
the call journal, the run's settings), so another machine can continue a run with no shared files.
"""

from __future__ import annotations

import json
import threading
import time
import zlib
from typing import Any
from urllib.parse import urlsplit

from drpo.errors import DrpoInputError

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_dsn(value: str | None) -> bool:
    """Whether a checkpointer setting names a Postgres database."""
    return bool(value) and str(value).startswith(POSTGRES_SCHEMES)


JOURNAL_DDL = """
CREATE TABLE IF NOT EXISTS drpo_journal (
    run_id TEXT NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    seq BIGSERIAL, PRIMARY KEY (run_id, kind, key))
"""
RUNS_DDL = """
CREATE TABLE IF NOT EXISTS drpo_runs (
    run_id TEXT PRIMARY KEY, kind TEXT NOT NULL, config TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL,
    status TEXT)
"""


def describe_dsn(dsn: str) -> str:
    """host:port/db of a DSN, for error messages (never credentials)."""
    parsed = urlsplit(dsn)
    return f"{parsed.hostname or 'localhost'}:{parsed.port or 5432}{parsed.path or ''}"


def connect(dsn: str, *, dict_rows: bool = False) -> Any:
    """An autocommit connection, or one clear error when the server cannot be reached."""
    try:
        import psycopg
        from psycopg.rows import dict_row
    except ImportError:
        raise DrpoInputError("Postgres support is not installed: pip install 'drpo[postgres]'") from None

    try:
        return psycopg.Connection.connect(
            dsn,
            autocommit=True,
            prepare_threshold=0,
            connect_timeout=10,
            **({"row_factory": dict_row} if dict_rows else {}),
        )
    except psycopg.OperationalError as error:
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise DrpoInputError(f"cannot connect to Postgres at {describe_dsn(dsn)}: {reason}") from None


class PostgresKV:
    """The SqliteKV interface over one Postgres table, namespaced by run and kind."""

    def __init__(self, dsn: str, run_id: str, kind: str) -> None:
        self._conn = connect(dsn)
        self._lock = threading.Lock()
        self._run_id = run_id
        self._kind = kind
        with self._lock:
            self._conn.execute(JOURNAL_DDL)

    def get(self, key: str) -> Any | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT value FROM drpo_journal WHERE run_id = %s AND kind = %s AND key = %s",
                (self._run_id, self._kind, key),
            ).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO drpo_journal (run_id, kind, key, value) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (run_id, kind, key) DO UPDATE SET value = EXCLUDED.value",
                (self._run_id, self._kind, key, json.dumps(value)),
            )

    def items(self) -> list[tuple[str, Any]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT key, value FROM drpo_journal WHERE run_id = %s AND kind = %s ORDER BY seq",
                (self._run_id, self._kind),
            ).fetchall()
        return [(key, json.loads(value)) for key, value in rows]

    def keys(self) -> list[str]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT key FROM drpo_journal WHERE run_id = %s AND kind = %s", (self._run_id, self._kind)
            ).fetchall()
        return [key for (key,) in rows]

    def __len__(self) -> int:
        return len(self.items())

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def save_run(dsn: str, run_id: str, kind: str, config: dict[str, Any]) -> None:
    """Record a run's kind and settings, so any machine can resume it."""
    with connect(dsn) as conn:
        conn.execute(RUNS_DDL)
        conn.execute(
            "INSERT INTO drpo_runs (run_id, kind, config, created_at) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (run_id) DO UPDATE SET config = EXCLUDED.config",
            (run_id, kind, json.dumps(config), time.time()),
        )


def forget_run(dsn: str, run_id: str) -> None:
    """Delete a run's journal and registry rows (its checkpoints go through the saver's delete_thread)."""
    with connect(dsn) as conn:
        conn.execute(JOURNAL_DDL)
        conn.execute(RUNS_DDL)
        conn.execute("DELETE FROM drpo_journal WHERE run_id = %s", (run_id,))
        conn.execute("DELETE FROM drpo_runs WHERE run_id = %s", (run_id,))


def save_status(dsn: str, run_id: str, record: dict[str, Any]) -> None:
    """Mirror a run's status.json in the database, so ``drpo status`` answers on any machine."""
    with connect(dsn) as conn:
        conn.execute("UPDATE drpo_runs SET status = %s WHERE run_id = %s", (json.dumps(record), run_id))


def load_status(dsn: str, run_id: str) -> dict[str, Any] | None:
    with connect(dsn) as conn:
        conn.execute(RUNS_DDL)
        row = conn.execute("SELECT status FROM drpo_runs WHERE run_id = %s", (run_id,)).fetchone()
    return None if row is None or row[0] is None else dict(json.loads(row[0]))


def load_run(dsn: str, run_id: str) -> tuple[str, dict[str, Any]] | None:
    """(kind, settings) of a run recorded in the database, or None."""
    with connect(dsn) as conn:
        conn.execute(RUNS_DDL)
        row = conn.execute("SELECT kind, config FROM drpo_runs WHERE run_id = %s", (run_id,)).fetchone()
    return None if row is None else (row[0], json.loads(row[1]))


class PostgresRunLock:
    """A session advisory lock on the run id: a second process driving the same run is refused."""

    def __init__(self, dsn: str, run_id: str) -> None:
        self._dsn = dsn
        self._key = zlib.crc32(f"drpo-run:{run_id}".encode())
        self._conn: Any = None

    def acquire(self) -> bool:
        self._conn = connect(self._dsn)
        row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()
        if not row[0]:
            self._conn.close()
            self._conn = None
            return False
        return True

    def release(self) -> None:
        """Unlock explicitly, then end the session. Closing alone releases the lock only once the server has
        processed the disconnect, after this call returns: a resume made right after (the next command, or
        the next review decision in-process) could then find the run still locked, on a loaded machine."""
        if self._conn is not None:
            try:
                self._conn.execute("SELECT pg_advisory_unlock(%s)", (self._key,))
            except Exception:  # the connection is gone: the server ended the session and its lock with it
                pass
            finally:
                self._conn.close()
                self._conn = None
