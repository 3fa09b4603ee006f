"""Reusable daemon threads for model requests that may be abandoned at their deadline.

A request runs on a thread of its own so that its caller can give up on a server that trickles bytes for
ever (``drpo.llm.retry.within_deadline``). Starting a new thread for every request costs a hand-over of the
interpreter lock in each direction on the path between one round of model calls and the next; these threads
are started once and reused. A thread whose request was abandoned stays busy until that request ends, and a
new one is started whenever no thread is free, so an abandoned request never holds up another.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable


class RequestThreads:
    """A pool that grows to the number of requests in flight at once and never makes a job wait."""

    def __init__(self, name: str = "drpo-request") -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._idle = 0  # threads waiting for a job, or started for one and not yet waiting
        self._lock = threading.Lock()
        self.started = 0

    def submit(self, job: Callable[[], None]) -> None:
        """Run ``job`` on a free thread (a new one when none is free). ``job`` must not raise."""
        with self._lock:
            start_one = self._idle == 0
            if start_one:
                self.started += 1
            else:
                self._idle -= 1
        self._jobs.put(job)
        if start_one:
            threading.Thread(target=self._work, name=self._name, daemon=True).start()

    def _work(self) -> None:
        while True:
            self._jobs.get()()
            with self._lock:
                self._idle += 1


REQUEST_THREADS = RequestThreads()


def run_on_request_thread(job: Callable[[], None]) -> None:
    """``job`` on one of the process's request threads."""
    REQUEST_THREADS.submit(job)


def _forget_threads_after_fork() -> None:
    """A forked child has none of its parent's threads: it starts with an empty pool."""
    global REQUEST_THREADS
    REQUEST_THREADS = RequestThreads()


os.register_at_fork(after_in_child=_forget_threads_after_fork)
