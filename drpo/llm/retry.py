"""Retries for provider errors that can heal, and a requests-per-minute limiter.

Transient errors (429, 5xx, timeouts, dropped or refused connections) are retried with
exponential backoff and jitter, honouring Retry-After. Errors that cannot heal (bad key,
unknown model, rejected request) fail at once with one line naming the role and provider.
"""

from __future__ import annotations

import contextvars
import json
import logging
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from drpo.errors import DrpoInputError, ModelCallError, ProviderUnavailable
from drpo.llm.request_threads import run_on_request_thread
from drpo.store.redaction import redact

log = logging.getLogger("drpo.calls")
T = TypeVar("T")


class NotAChatCompletion(Exception):
    """A successful reply that is no chat completion at all (an HTML page, plain text): the URL points at
    something other than an OpenAI-compatible API, which no retry heals."""


class DeadlineExceeded(Exception):
    """A request still unanswered at its deadline (a hung or trickling server): retried like a timeout."""


class NoChoices(Exception):
    """A chat completion with no choice in it: a server fault, retried like a malformed body."""


class ServerStatusError(Exception):
    """A reply with an error status (4xx, 5xx); ``retry_after`` from the server's header when given."""

    def __init__(self, status_code: int, message: str, retry_after: str | None = None) -> None:
        super().__init__(f"Error code: {status_code} - {message}")
        self.status_code = status_code
        self.message = f"Error code: {status_code} - {message}"
        self.retry_after = retry_after


class ServerUnreachable(Exception):
    """No reply at all: the connection was refused, reset or dropped before a whole reply arrived."""


class ServerTimeout(ServerUnreachable):
    """No byte from the server for the role's ``timeout``."""


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 4
    base_delay: float = 0.5
    max_delay: float = 30.0


def _retry_after(error: Exception) -> float | None:
    value = getattr(error, "retry_after", None)  # drpo's chat client keeps the header itself
    if value is None:
        headers = getattr(getattr(error, "response", None), "headers", None)
        value = headers.get("retry-after") if headers else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _openai_sdk() -> Any:
    """The openai module when something imported it (only then can an error be one of its own): importing it
    here would cost half a second, on whichever thread fails first."""
    return sys.modules.get("openai")


def classify(error: Exception) -> str:
    """``transient``, ``fatal`` (cannot heal) or ``other`` (a bug or an unknown failure: not retried)."""
    if isinstance(error, ServerUnreachable):
        return "transient"  # a timeout too
    if isinstance(error, ServerStatusError):
        transient = error.status_code == 429 or error.status_code >= 500 or error.status_code in {408, 409}
        return "transient" if transient else "fatal"
    if isinstance(error, json.JSONDecodeError | NoChoices | DeadlineExceeded):
        return "transient"  # a malformed body from the server
    if isinstance(error, NotAChatCompletion):
        return "fatal"
    openai = _openai_sdk()
    if openai is None:
        return "other"
    if isinstance(error, openai.RateLimitError | openai.InternalServerError | openai.APIConnectionError):
        return "transient"  # APITimeoutError is an APIConnectionError
    if isinstance(error, openai.APIStatusError) and error.status_code in {408, 409, 502, 503, 504}:
        return "transient"
    if isinstance(error, openai.APIResponseValidationError):
        return "transient"  # a malformed body from the server
    if isinstance(error, openai.APIStatusError):
        return "fatal"
    return "other"


STATUS_MEANINGS = {
    401: "authentication failed",
    403: "permission denied",
    404: "model or endpoint not found",
    400: "request rejected",
}


def describe_fatal(role: str, where: str, error: Exception) -> ModelCallError:
    kinds: list[tuple[type[Exception], str]] = [
        (ServerUnreachable, "cannot reach the server"),
        (NotAChatCompletion, "the reply is not a chat completion (is base_url the API's /v1 address?)"),
    ]
    if (openai := _openai_sdk()) is not None:
        kinds += [
            (openai.AuthenticationError, "authentication failed"),
            (openai.PermissionDeniedError, "permission denied"),
            (openai.NotFoundError, "model or endpoint not found"),
            (openai.BadRequestError, "request rejected"),
            (openai.APIConnectionError, "cannot reach the server"),
        ]
    what = next((text for kind, text in kinds if isinstance(error, kind)), "provider error")
    if isinstance(error, ServerStatusError):
        what = STATUS_MEANINGS.get(error.status_code, what)
    status = getattr(error, "status_code", None)
    detail = getattr(error, "message", None) or str(error)
    code = f" ({status})" if status else ""
    return ModelCallError(redact(f"role {role} ({where}): {what}{code}: {detail}".replace("\n", " "))[:400])


def describe_gave_up(role: str, where: str, error: Exception, retries: int) -> ProviderUnavailable:
    status = getattr(error, "status_code", None)
    detail = getattr(error, "message", None) or str(error) or type(error).__name__
    code = f" ({status})" if status else ""
    line = f"role {role} ({where}): still failing after {retries} retries{code}: {detail}"
    return ProviderUnavailable(redact(line.replace("\n", " "))[:400])


@contextmanager
def reply_shape_checked(openai_style: bool) -> Iterator[None]:
    """Name by type what the OpenAI client and LangChain raise on a 200 reply of the wrong shape: an index
    error for a completion without choices (a server fault: retried), a value or type error for a body
    that is no completion at all (an HTML page: the URL is wrong, which no retry heals)."""
    try:
        yield
    except IndexError as error:
        if not openai_style:
            raise
        raise NoChoices("the server replied with no choices") from error
    except (TypeError, ValueError) as error:
        if not openai_style or isinstance(error, DrpoInputError | json.JSONDecodeError):
            raise
        raise NotAChatCompletion(f"{type(error).__name__}: {str(error)[:160]}") from error


def within_deadline(action: Callable[[], T], seconds: float) -> T:
    """``action``'s result, or DeadlineExceeded once ``seconds`` have passed. The HTTP client's timeout
    restarts with every byte, so a server that trickles one byte at a time would hold a call for ever;
    the action runs on a daemon thread (with the caller's context, one of the reused request threads) that is
    abandoned at the deadline."""
    done = threading.Event()
    outcome: dict[str, Any] = {}
    context = contextvars.copy_context()

    def run() -> None:
        try:
            outcome["value"] = context.run(action)
        except BaseException as error:  # handed to the waiting thread, raised there
            outcome["error"] = error
        finally:
            done.set()

    run_on_request_thread(run)
    if not done.wait(seconds):
        raise DeadlineExceeded(f"no complete reply within the {seconds:g} s deadline")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]  # type: ignore[no-any-return]


def call_with_retries(
    action: Callable[[], T], *, role: str, where: str, policy: RetryPolicy, on_retry: Callable[[], None]
) -> T:
    """Run ``action``; retry transient provider errors, fail fast on the rest."""
    attempt = 0
    while True:
        try:
            return action()
        except Exception as error:
            kind = classify(error)
            if kind == "fatal":
                raise describe_fatal(role, where, error) from None
            if kind == "other":
                raise
            if attempt >= policy.max_retries:
                if never_connected(error):
                    raise describe_fatal(role, where, error) from None
                raise describe_gave_up(role, where, error, attempt) from None
            delay = min(policy.max_delay, policy.base_delay * 2**attempt) * (0.5 + random.random() / 2)
            hinted = _retry_after(error)
            if hinted is not None:
                delay = min(policy.max_delay, max(hinted, 0.0))
            attempt += 1
            on_retry()
            log.warning("role=%s transient %s; retry %d in %.2fs", role, type(error).__name__, attempt, delay)
            time.sleep(delay)


def never_connected(error: Exception) -> bool:
    """A connection failure other than a timeout: after every retry, the server is unreachable."""
    if isinstance(error, ServerUnreachable):
        return not isinstance(error, ServerTimeout)
    openai = _openai_sdk()
    return (
        openai is not None
        and isinstance(error, openai.APIConnectionError)
        and not isinstance(error, openai.APITimeoutError)
    )


class RateLimiter:
    """At most ``per_minute`` request starts per minute, spread evenly; shared by every role on one server."""

    def __init__(self, per_minute: float) -> None:
        self._interval = 60.0 / per_minute
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self._interval
        if start > now:
            time.sleep(start - now)
