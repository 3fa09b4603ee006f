"""One driver per run: a lock held while a process runs the graph on a run's thread."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any, Protocol

from drpo.errors import DrpoInputError
from drpo.store.files import is_writable_dir
from drpo.store.postgres import is_postgres_dsn


class RunLock(Protocol):
    def acquire(self) -> bool: ...

    def release(self) -> None: ...


class FileRunLock:
    """An exclusive flock on a file in the run directory; the OS drops it when the process dies."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock; in a directory nobody may write, a lock can only be held by a reader (``is_driven``)."""
        if not is_writable_dir(self._path.parent):
            if not self._path.is_file():
                return True
            fd = os.open(self._path, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            self._fd = fd
            return True
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def run_lock_for(checkpointer: str, lock_file: Path, run_id: str) -> RunLock:
    """Postgres runs lock in the database (machines share it); local runs lock a file."""
    if is_postgres_dsn(checkpointer):
        from drpo.store.postgres import PostgresRunLock

        return PostgresRunLock(checkpointer, run_id)
    return FileRunLock(lock_file)


def is_driven(lock: RunLock) -> bool:
    """True while another process holds the run's lock."""
    if lock.acquire():
        lock.release()
        return False
    return True


def hold(lock: RunLock, run_id: str) -> Any:
    """Take the lock or refuse with one clear line."""
    if not lock.acquire():
        raise DrpoInputError(f"run {run_id} is being driven by another process; wait for it or stop it first")
    return lock
