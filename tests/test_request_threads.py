"""The reused request threads behind per-request deadlines."""

from __future__ import annotations

import contextvars
import threading

import pytest

from drpo.llm.request_threads import RequestThreads
from drpo.llm.retry import DeadlineExceeded, within_deadline


def test_sequential_requests_reuse_one_thread() -> None:
    pool = RequestThreads(name="test-request")
    names: list[str] = []
    for _ in range(20):
        done = threading.Event()
        pool.submit(lambda done=done: (names.append(threading.current_thread().name), done.set()))
        assert done.wait(5)
    assert pool.started == 1 and names == ["test-request"] * 20


def test_a_stuck_job_never_holds_up_the_next() -> None:
    pool = RequestThreads(name="test-request")
    release, ran = threading.Event(), threading.Event()
    pool.submit(lambda: release.wait(30))  # a request abandoned at its deadline, still running
    pool.submit(ran.set)
    assert ran.wait(5)
    assert pool.started == 2
    release.set()


def test_concurrent_jobs_each_get_a_thread_and_threads_come_back() -> None:
    pool = RequestThreads(name="test-request")
    barrier = threading.Barrier(5)  # four jobs and this test: all four must run at once to pass it
    finished = threading.Semaphore(0)

    def job() -> None:
        barrier.wait(5)
        finished.release()

    for _ in range(4):
        pool.submit(job)
    barrier.wait(5)
    for _ in range(4):
        assert finished.acquire(timeout=5)
    assert pool.started == 4
    again = threading.Event()
    pool.submit(again.set)
    assert again.wait(5) and pool.started == 4  # a returned thread took it


def test_within_deadline_keeps_the_callers_context_and_still_gives_up_in_time() -> None:
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="unset")
    marker.set("caller")
    assert within_deadline(marker.get, 5) == "caller"
    with pytest.raises(ValueError, match="boom"):
        within_deadline(lambda: (_ for _ in ()).throw(ValueError("boom")), 5)
    hang = threading.Event()
    with pytest.raises(DeadlineExceeded):
        within_deadline(lambda: hang.wait(30), 0.2)
    assert within_deadline(lambda: 42, 5) == 42  # the hung request's thread is not the only one
    hang.set()
