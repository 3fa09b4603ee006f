"""A value built on a daemon thread while the caller goes on, so slow start-up work (opening Chroma,
embedding the seed queries) overlaps the first model requests instead of delaying them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Background(Generic[T]):
    """``start()`` runs ``build`` once on its own thread; ``get()`` waits for it (starting it when nobody
    did) and re-raises its error in the caller, where the run's error handling sees it."""

    def __init__(self, build: Callable[[], T], name: str) -> None:
        self._build = build
        self._name = name
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._value: T | None = None
        self._error: BaseException | None = None

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._build()
        except BaseException as error:  # handed to the caller of get()
            self._error = error
        finally:
            self._done.set()

    def get(self) -> T:
        self.start()
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]

    def wait(self) -> None:
        """Wait for a started build, ignoring its outcome (closing must not leave a thread writing)."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            self._done.wait()
