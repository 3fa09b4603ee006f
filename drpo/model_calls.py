"""Every model call goes through here: concurrency cap, journal (no finished call is repeated
after a resume), per-call seeds, token accounting, and structured output with repair-and-retry.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from langchain_core.language_models import BaseChatModel, BaseLanguageModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from drpo.pricing import BudgetGuard
from drpo.prompts import RETRY_FEEDBACK, render
from drpo.retry import RateLimiter, RetryPolicy, call_with_retries
from drpo.settings import RoleSpec
from drpo.store.call_journal import CallJournal, call_key
from drpo.store.response_cache import ResponseCache
from drpo.structured import OutputParseError, extract_json_object

log = logging.getLogger("drpo.calls")
T = TypeVar("T")


def empty_usage() -> dict[str, int]:
    return {"calls": 0, "input_tokens": 0, "output_tokens": 0, "estimated_calls": 0}


def add_usage(left: dict[str, int], right: dict[str, int]) -> dict[str, int]:
    return {key: left.get(key, 0) + right.get(key, 0) for key in set(left) | set(right)}


@dataclass
class CallOutcome:
    text: str
    usage: dict[str, int]
    from_journal: bool
    truncated: bool = False


@dataclass
class StructuredOutcome(Generic[T]):
    """A parsed value, or None with the errors of every attempt."""

    value: T | None
    attempts: int
    errors: list[str] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=empty_usage)
    raw: str = ""


@dataclass
class CallStats:
    """Live counters for progress display (not part of results: they differ after a resume)."""

    fresh_calls: int = 0
    journal_hits: int = 0
    cache_hits: int = 0
    retries: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _serialize(request: list[BaseMessage] | str) -> Any:
    if isinstance(request, str):
        return request
    return [[message.type, message.content] for message in request]


def _estimate_tokens(text: str) -> int:
    return max(1, len(text) // 4)


class RoleCaller:
    """Calls one role's model. Thread-safe; shared by all Send branches."""

    def __init__(
        self,
        role: str,
        spec: RoleSpec,
        model: BaseLanguageModel,
        model_id: str,
        journal: CallJournal,
        limiter: threading.BoundedSemaphore,
        stats: CallStats,
        seed: int,
        openai_style: bool,
        rate_limiter: RateLimiter | None = None,
        budget: BudgetGuard | None = None,
        response_cache: ResponseCache | None = None,
    ) -> None:
        self.role = role
        self.spec = spec
        self.model = model
        self.model_id = model_id
        self._journal = journal
        self._limiter = limiter
        self._stats = stats
        self._seed = seed
        self._openai_style = openai_style
        self._rate_limiter = rate_limiter
        self._budget = budget
        self._cache = response_cache

    @property
    def is_chat(self) -> bool:
        return isinstance(self.model, BaseChatModel)

    def complete(
        self,
        request: list[BaseMessage] | str,
        *,
        sample: int = 0,
        stop: tuple[str, ...] = (),
        json_schema: dict[str, Any] | None = None,
        seed_basis: str | None = None,
    ) -> CallOutcome:
        """One model call, answered from the run journal when it already finished before.

        ``seed_basis`` (the first attempt's key) keeps one sampling seed across re-asks of one sample."""
        schema = self._schema(json_schema)
        key = self._key(request, stop, schema, sample=sample)
        done = self._journal.get_call(key)
        if done is not None:
            with self._stats.lock:
                self._stats.journal_hits += 1
            return CallOutcome(
                text=done["text"], usage=done["usage"], from_journal=True, truncated=done.get("truncated", False)
            )
        hit = self._cached(key)
        if hit is not None:
            return CallOutcome(text=hit["text"], usage=hit["usage"], from_journal=False, truncated=hit["truncated"])
        kwargs = self._kwargs(seed_basis or key, stop, schema)
        started = time.monotonic()
        text, usage, truncated = self._send(lambda: self._invoke(request, kwargs))
        log.info(
            "call role=%s model=%s sample=%d in=%d out=%d %.2fs",
            self.role,
            self.model_id,
            sample,
            usage["input_tokens"],
            usage["output_tokens"],
            time.monotonic() - started,
        )
        self._record(key, {"role": self.role, "text": text, "usage": usage, "truncated": truncated})
        if self._budget is not None:
            self._budget.add(self.role, usage)
        with self._stats.lock:
            self._stats.fresh_calls += 1
        return CallOutcome(text=text, usage=usage, from_journal=False, truncated=truncated)

    @property
    def samples_with_n(self) -> bool:
        """Whether M samples come from one request with ``n`` (OpenAI-style chat servers that support it)."""
        return self._openai_style and self.is_chat and self.spec.uses_n()

    def complete_samples(
        self, request: list[BaseMessage], count: int, *, json_schema: dict[str, Any] | None = None
    ) -> list[CallOutcome]:
        """``count`` samples of one request: one call with ``n`` where supported, else one call each.

        With ``n`` the whole usage is booked on the first sample so totals stay right."""
        if count == 1 or not self.samples_with_n:
            return [self.complete(request, sample=index, json_schema=json_schema) for index in range(count)]
        schema = self._schema(json_schema)
        key = self._key(request, (), schema, sample=0, n=count)
        done = self._journal.get_call(key)
        cached = done is not None
        if done is None:
            done = self._cached(key)
        if done is None:
            kwargs = self._kwargs(key, (), schema)
            kwargs["n"] = count
            started = time.monotonic()
            result = self._send(lambda: self.model.generate([request], **kwargs))
            generations = result.generations[0]
            token_usage = (result.llm_output or {}).get("token_usage") or {}
            usage = empty_usage()
            usage["calls"] = 1
            usage["input_tokens"] = int(token_usage.get("prompt_tokens", 0))
            usage["output_tokens"] = int(token_usage.get("completion_tokens", 0))
            done = {
                "role": self.role,
                "texts": [generation.text for generation in generations],
                "truncated": [
                    (generation.generation_info or {}).get("finish_reason") == "length" for generation in generations
                ],
                "usage": usage,
            }
            log.info(
                "call role=%s model=%s n=%d in=%d out=%d %.2fs",
                self.role,
                self.model_id,
                count,
                usage["input_tokens"],
                usage["output_tokens"],
                time.monotonic() - started,
            )
            self._record(key, done)
            if self._budget is not None:
                self._budget.add(self.role, usage)
            with self._stats.lock:
                self._stats.fresh_calls += 1
        outcomes = []
        for index, text in enumerate(done["texts"][:count]):
            usage = done["usage"] if index == 0 else empty_usage()
            outcomes.append(
                CallOutcome(text=text, usage=usage, from_journal=cached, truncated=done["truncated"][index])
            )
        return outcomes

    def _cache_key(self, key: str) -> str:
        return call_key({"call": key, "provider": self.spec.provider, "base_url": self.spec.base_url or ""})

    def _cached(self, key: str) -> dict[str, Any] | None:
        """A response from the shared cache, journaled for this run at no token cost."""
        if self._cache is None:
            return None
        found = self._cache.get(self._cache_key(key))
        if found is None:
            return None
        record = {**found, "role": self.role, "usage": {**empty_usage(), "cached_calls": 1}}
        self._journal.put_call(key, record)
        with self._stats.lock:
            self._stats.cache_hits += 1
        return record

    def _record(self, key: str, record: dict[str, Any]) -> None:
        self._journal.put_call(key, record)
        if self._cache is not None:
            self._cache.put(self._cache_key(key), record)

    def key_for(self, request: list[BaseMessage] | str, json_schema: dict[str, Any] | None, sample: int) -> str:
        return self._key(request, (), self._schema(json_schema), sample=sample)

    def _schema(self, json_schema: dict[str, Any] | None) -> dict[str, Any] | None:
        return json_schema if (json_schema is not None and self.spec.uses_json_schema()) else None

    def _key(
        self, request: list[BaseMessage] | str, stop: tuple[str, ...], schema: dict[str, Any] | None, **extra: Any
    ) -> str:
        return call_key(
            {
                "role": self.role,
                "model": self.model_id,
                "request": _serialize(request),
                "temperature": self.spec.temperature,
                "max_tokens": self.spec.max_tokens,
                "stop": list(stop),
                "schema": schema,
                "seed": self._seed,
                **extra,
            }
        )

    def _kwargs(self, key: str, stop: tuple[str, ...], schema: dict[str, Any] | None) -> dict[str, Any]:
        """Per-call parameters: a seed derived from the call key (reproducible samples), the JSON schema, stops."""
        kwargs: dict[str, Any] = {}
        if self._openai_style or getattr(self.model, "drpo_accepts_seed", False):
            kwargs["seed"] = int(key[:7], 16)
        if self._openai_style and schema is not None:
            # Sent as a raw body field: the SDK's typed parse path raises on truncated output,
            # while we want truncation to be an ordinary, retried parse failure.
            kwargs["extra_body"] = {
                "response_format": {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}}
            }
        if stop:
            kwargs["stop"] = list(stop)
        return kwargs

    def _send(self, action: Callable[[], T]) -> T:
        """Run one provider request under the budget, concurrency cap, rate limit and retry policy."""
        if self._budget is not None:
            self._budget.check()
        spec = self.spec
        policy = RetryPolicy(spec.max_retries, spec.retry_base_delay, spec.retry_max_delay)

        def limited() -> T:
            if self._rate_limiter is not None:
                self._rate_limiter.acquire()
            with self._limiter:
                return action()

        def count_retry() -> None:
            with self._stats.lock:
                self._stats.retries[self.role] = self._stats.retries.get(self.role, 0) + 1

        if not self._openai_style:
            return limited()
        return call_with_retries(
            limited, role=self.role, where=f"{spec.provider} {self.model_id}", policy=policy, on_retry=count_retry
        )

    def _invoke(self, request: list[BaseMessage] | str, kwargs: dict[str, Any]) -> tuple[str, dict[str, int], bool]:
        """Call the model; returns text, token usage (estimated when the provider gives none), truncation."""
        usage = empty_usage()
        usage["calls"] = 1
        prompt_text = request if isinstance(request, str) else "\n".join(str(m.content) for m in request)
        if self.is_chat:
            message = self.model.invoke(request, **kwargs)
            text = message.content if isinstance(message.content, str) else str(message.content)
            truncated = (message.response_metadata or {}).get("finish_reason") == "length"
            meta = getattr(message, "usage_metadata", None)
            if meta:
                usage["input_tokens"] = int(meta.get("input_tokens", 0))
                usage["output_tokens"] = int(meta.get("output_tokens", 0))
                return text, usage, truncated
        else:
            result = self.model.generate([prompt_text], **kwargs)
            generation = result.generations[0][0]
            text = generation.text
            truncated = (generation.generation_info or {}).get("finish_reason") == "length"
            token_usage = (result.llm_output or {}).get("token_usage") or {}
            if token_usage:
                usage["input_tokens"] = int(token_usage.get("prompt_tokens", 0))
                usage["output_tokens"] = int(token_usage.get("completion_tokens", 0))
                return text, usage, truncated
        usage["input_tokens"] = _estimate_tokens(prompt_text)
        usage["output_tokens"] = _estimate_tokens(text)
        usage["estimated_calls"] = 1
        return text, usage, truncated


def call_structured(
    caller: RoleCaller,
    prompt: str,
    parse: Callable[[dict[str, Any]], T],
    *,
    retries: int,
    sample: int = 0,
    json_schema: dict[str, Any] | None = None,
    first: CallOutcome | None = None,
) -> StructuredOutcome[T]:
    """Ask for JSON, parse and validate it; on failure re-ask with the error, up to ``retries`` times.

    ``first`` is an already received first reply (from a request with ``n``)."""
    messages: list[BaseMessage] = [HumanMessage(content=prompt)]
    outcome: StructuredOutcome[T] = StructuredOutcome(value=None, attempts=0)
    seed_basis = caller.key_for(messages, json_schema, sample=sample)
    for attempt in range(retries + 1):
        if attempt == 0 and first is not None:
            call = first
        else:
            call = caller.complete(messages, sample=sample, json_schema=json_schema, seed_basis=seed_basis)
        outcome.attempts += 1
        outcome.usage = add_usage(outcome.usage, call.usage)
        outcome.raw = call.text
        try:
            outcome.value = parse(extract_json_object(call.text))
            return outcome
        except OutputParseError as error:
            if call.truncated:
                error = OutputParseError(
                    f"{error} (the reply hit the length limit and was cut off; answer more briefly)"
                )
            outcome.errors.append(str(error))
            log.warning("role=%s unusable reply (attempt %d): %s", caller.role, outcome.attempts, error)
            messages = [
                *messages,
                AIMessage(content=call.text[:4000]),
                HumanMessage(content=render(RETRY_FEEDBACK, error=str(error))),
            ]
    return outcome


def call_structured_samples(
    caller: RoleCaller,
    prompt: str,
    parse: Callable[[dict[str, Any]], T],
    count: int,
    *,
    retries: int,
    json_schema: dict[str, Any] | None = None,
) -> list[StructuredOutcome[T]]:
    """``count`` independent structured samples; each unusable one is retried on its own.

    Without ``n`` the samples run in parallel (each under the global concurrency cap); each is
    keyed and seeded by its index, so the result does not depend on their timing."""
    if count > 1 and not caller.samples_with_n:
        with ThreadPoolExecutor(max_workers=count) as pool:
            futures = [
                pool.submit(
                    call_structured, caller, prompt, parse, retries=retries, sample=index, json_schema=json_schema
                )
                for index in range(count)
            ]
            return [future.result() for future in futures]
    firsts = caller.complete_samples([HumanMessage(content=prompt)], count, json_schema=json_schema)
    return [
        call_structured(caller, prompt, parse, retries=retries, sample=index, json_schema=json_schema, first=first)
        for index, first in enumerate(firsts)
    ]
