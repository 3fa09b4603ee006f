"""Every model call goes through here: concurrency cap, journal (no finished call is repeated
after a resume), per-call seeds, token accounting, and structured output with repair-and-retry.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from drpo.background import Background
from drpo.llm.chat_client import LeanRoute, reply_choices, reply_usage
from drpo.llm.logprobs import TOP_LOGPROBS, DigitAlternatives, digit_alternatives
from drpo.llm.pricing import BudgetGuard
from drpo.llm.retry import RateLimiter, RetryPolicy, call_with_retries, reply_shape_checked, within_deadline
from drpo.llm.structured import OutputParseError, RejectedContent, parse_first_valid
from drpo.llm.usage import add_usage, empty_usage, estimate_tokens
from drpo.prompts import RETRY_FEEDBACK, RETRY_REJECTED, render
from drpo.settings import RoleSpec
from drpo.store.call_journal import CallJournal, call_key
from drpo.store.redaction import redact_known
from drpo.store.response_cache import ResponseCache

if TYPE_CHECKING:  # the classes are looked up only for a model someone built, whose module is loaded by then
    from langchain_core.language_models import BaseLanguageModel

log = logging.getLogger("drpo.calls")
T = TypeVar("T")


@dataclass
class CallOutcome:
    text: str
    usage: dict[str, int]
    from_journal: bool
    truncated: bool = False
    alternatives: list[DigitAlternatives] = field(default_factory=list)  # asked with ``logprobs`` only


@dataclass
class StructuredOutcome(Generic[T]):
    """A parsed value, or None with the errors of every attempt."""

    value: T | None
    attempts: int
    errors: list[str] = field(default_factory=list)
    error_kinds: list[str] = field(default_factory=list)  # each error's OutputParseError.kind, in order
    usage: dict[str, int] = field(default_factory=empty_usage)
    raw: str = ""
    alternatives: list[DigitAlternatives] = field(default_factory=list)  # of the reply that parsed


@dataclass
class CallStats:
    """Live counters for progress display (not part of results: they differ after a resume)."""

    fresh_calls: int = 0
    journal_hits: int = 0
    cache_hits: int = 0
    retries: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _is_model(value: object) -> bool:
    """A LangChain model (runnables are callable too), not a factory of one."""
    return hasattr(value, "invoke")


def _serialize(request: list[BaseMessage] | str) -> Any:
    if isinstance(request, str):
        return request
    return [[message.type, message.content] for message in request]


class KeyedLocks:
    """One lock per call key, so two identical requests in flight at once become one call and one journal
    hit: sent twice, the second would reach a server whose prompt cache the first had just filled, and a
    llama.cpp server can then reply differently to the same request."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._users: dict[str, int] = {}
        self._guard = threading.Lock()

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
            self._users[key] = self._users.get(key, 0) + 1
        try:
            with lock:
                yield
        finally:
            with self._guard:
                self._users[key] -= 1
                if not self._users[key]:  # nobody waits on it: forget it, so the map stays small
                    del self._users[key], self._locks[key]


@dataclass
class CallerDeps:
    """What every role's caller shares within one run: the journal, the caps and the accounting."""

    journal: CallJournal
    limiter: threading.BoundedSemaphore
    stats: CallStats
    seed: int
    rate_limiter: RateLimiter | None = None
    budget: BudgetGuard | None = None
    response_cache: ResponseCache | None = None
    in_flight: KeyedLocks = field(default_factory=KeyedLocks)


class RoleCaller:
    """Calls one role's model. Thread-safe; shared by all Send branches.

    Every request follows one path: the run journal (a finished call is never repeated), the shared
    response cache, then the provider under budget, rate limit, concurrency cap and retries, and the
    reply is journaled (and cached) before it is used."""

    def __init__(
        self,
        role: str,
        spec: RoleSpec,
        model: BaseLanguageModel | Callable[[], BaseLanguageModel],
        model_id: str,
        deps: CallerDeps,
        *,
        openai_style: bool,
        cache_responses: bool = False,
        route: LeanRoute | None = None,
    ) -> None:
        """``model`` may be a factory, built on first use: a role whose requests take ``route`` (drpo's own
        chat client) needs its LangChain model only where it is handed on (an aligned model in evaluation)."""
        self.role = role
        self.spec = spec
        self._model: BaseLanguageModel | None = model if _is_model(model) else None  # type: ignore[assignment]
        self._build_model = model
        self._model_lock = threading.Lock()
        self.route = route
        self.model_id = model_id
        self._deps = deps
        self._openai_style = openai_style
        self._cache = deps.response_cache if cache_responses else None
        self.n_decision: Background[bool] | None = None  # set when a probe decides n (drpo.llm.n_support)

    @property
    def model(self) -> BaseLanguageModel:
        """The role's LangChain model (built now if it was given as a factory)."""
        if self._model is None:
            with self._model_lock:
                if self._model is None:
                    self._model = self._build_model()  # type: ignore[operator]
        return self._model

    @property
    def is_chat(self) -> bool:
        if self.route is not None:
            return True
        from langchain_core.language_models import BaseChatModel  # loaded with the model's own class

        return isinstance(self.model, BaseChatModel)

    def for_model(self, spec: RoleSpec, model: BaseLanguageModel, model_id: str, *, openai_style: bool) -> RoleCaller:
        """A caller of another model for the same role, sharing this run's journal, caps and accounting."""
        return RoleCaller(
            self.role,
            spec,
            model,
            model_id,
            self._deps,
            openai_style=openai_style,
            cache_responses=self._cache is not None,
        )

    @property
    def where(self) -> str:
        """``provider:model``, and the server's URL when there is one (URLs never carry credentials here)."""
        return f"{self.model_id} at {self.spec.base_url}" if self.spec.base_url else self.model_id

    @property
    def samples_with_n(self) -> bool:
        """Whether M samples come from one request with ``n``: OpenAI-style chat servers that support it,
        as the settings force or (``sample_with_n`` unset on an OpenAI-compatible server) a probe found."""
        if not (self._openai_style and self.is_chat):
            return False
        if self.n_decision is not None:  # only set when the settings leave it to a probe
            return self.n_decision.get()
        return self.spec.uses_n()

    def complete(
        self,
        request: list[BaseMessage] | str,
        *,
        sample: int = 0,
        stop: tuple[str, ...] = (),
        json_schema: dict[str, Any] | None = None,
        seed_basis: str | None = None,
        logprobs: bool = False,
    ) -> CallOutcome:
        """One model call, answered from the run journal when it already finished before.

        ``seed_basis`` (the first attempt's key) keeps one sampling seed across re-asks of one sample.
        ``logprobs`` asks OpenAI-style servers for token log-probabilities; the alternatives at digit
        tokens are kept (``drpo.judge.expected``), nothing else of them."""
        schema = self._schema(json_schema)
        want = logprobs and self._openai_style and self.is_chat
        key = self._key(request, stop, schema, sample=sample, **({"logprobs": TOP_LOGPROBS} if want else {}))

        def send(kwargs: dict[str, Any]) -> dict[str, Any]:
            if want:
                kwargs = {**kwargs, "logprobs": True, "top_logprobs": TOP_LOGPROBS}
            text, usage, truncated, alternatives = self._invoke(request, kwargs)
            text = redact_known(text)  # a provider that echoes the key never gets it journaled or checkpointed
            # beside the usage, not in it: what the server had cached depends on what it served before,
            # and usage must be the same for a resumed run as for an unbroken one
            reused = usage.pop("cached_input_tokens", 0)
            record = {"role": self.role, "text": text, "usage": usage, "truncated": truncated}
            if reused:
                record["cached_input_tokens"] = reused
            return {**record, "alternatives": alternatives} if want else record

        record, from_journal = self._journaled(key, seed_basis or key, stop, schema, send, f"sample={sample}")
        return CallOutcome(
            text=record["text"],
            usage=record["usage"],
            from_journal=from_journal,
            truncated=record.get("truncated", False),
            alternatives=[(int(offset), dict(options)) for offset, options in record.get("alternatives", [])],
        )

    def complete_samples(
        self,
        request: list[BaseMessage],
        count: int,
        *,
        json_schema: dict[str, Any] | None = None,
        first_sample: int = 0,
    ) -> list[CallOutcome]:
        """``count`` samples of one request (indices from ``first_sample`` on): one call with ``n``
        where supported, else one call each. With ``n`` the whole usage is booked on the first sample."""
        if count == 1 or not self.samples_with_n:
            return [
                self.complete(request, sample=first_sample + index, json_schema=json_schema) for index in range(count)
            ]
        schema = self._schema(json_schema)
        offset = {"first": first_sample} if first_sample else {}  # keys of offset-free calls stay as they were
        key = self._key(request, (), schema, sample=0, n=count, **offset)

        def send(kwargs: dict[str, Any]) -> dict[str, Any]:
            texts, truncated, counted = self._samples(request, {**kwargs, "n": count})
            usage = {**empty_usage(), "calls": 1, **counted}
            return {
                "role": self.role,
                "texts": [redact_known(text) for text in texts],
                "truncated": truncated,
                "usage": usage,
            }

        record, from_journal = self._journaled(key, key, (), schema, send, f"n={count}")
        return [
            CallOutcome(
                text=text,
                usage=record["usage"] if index == 0 else empty_usage(),
                from_journal=from_journal,
                truncated=record["truncated"][index],
            )
            for index, text in enumerate(record["texts"][:count])
        ]

    def _samples(
        self, request: list[BaseMessage], kwargs: dict[str, Any]
    ) -> tuple[list[str], list[bool], dict[str, int]]:
        """Every choice of one request with ``n``: texts, whether each was cut, input and output tokens."""
        if self.route is not None:
            reply = self.route.send(request, kwargs)
            choices = reply_choices(reply)
            counted = reply_usage(reply) or {}
            tokens = {"input_tokens": counted.get("input_tokens", 0), "output_tokens": counted.get("output_tokens", 0)}
            return [choice.text for choice in choices], [choice.finish_reason == "length" for choice in choices], tokens
        with reply_shape_checked(self._openai_style):
            result = self.model.generate([request], **kwargs)
        generations = result.generations[0]
        token_usage = (result.llm_output or {}).get("token_usage") or {}
        tokens = {
            "input_tokens": int(token_usage.get("prompt_tokens", 0)),
            "output_tokens": int(token_usage.get("completion_tokens", 0)),
        }
        cut = [(generation.generation_info or {}).get("finish_reason") == "length" for generation in generations]
        return [generation.text for generation in generations], cut, tokens

    def _journaled(
        self,
        key: str,
        seed_basis: str,
        stop: tuple[str, ...],
        schema: dict[str, Any] | None,
        send: Callable[[dict[str, Any]], dict[str, Any]],
        label: str,
    ) -> tuple[dict[str, Any], bool]:
        """The one call sequence: journal, then cache, then the provider; returns (record, from_journal).
        Under the key's lock, so an identical request in flight at the same time waits and reads the journal."""
        with self._deps.in_flight.hold(key):
            deps = self._deps
            done = deps.journal.get_call(key)
            if done is not None:
                with deps.stats.lock:
                    deps.stats.journal_hits += 1
                return done, True
            hit = self._cached(key)
            if hit is not None:
                return hit, False
            kwargs = self._kwargs(seed_basis, stop, schema)
            timing: dict[str, float] = {}

            def timed() -> dict[str, Any]:
                """The request itself, timed without the wait for a concurrency slot or a rate limit."""
                started = time.monotonic()
                reply = send(kwargs)
                timing["seconds"] = time.monotonic() - started
                return reply

            # Journaled while the call still holds its concurrency slot: after kill -9 at most
            # ``concurrency`` calls are repeated, never one whose reply had already arrived.
            record = self._send(timed, keep=lambda reply: deps.journal.put_call(key, reply))
            usage = record["usage"]
            log.info(
                "call role=%s model=%s %s in=%d cached=%d out=%d %.2fs",
                self.role,
                self.model_id,
                label,
                usage["input_tokens"],
                record.get("cached_input_tokens", 0),
                usage["output_tokens"],
                timing.get("seconds", 0.0),
            )
            if self._cache is not None:
                self._cache.put(self._cache_key(key), record)
            if deps.budget is not None:
                deps.budget.add(self.role, usage)
            with deps.stats.lock:
                deps.stats.fresh_calls += 1
            return record, False

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
        self._deps.journal.put_call(key, record)
        with self._deps.stats.lock:
            self._deps.stats.cache_hits += 1
        return record

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
                **({"frequency_penalty": self.spec.frequency_penalty} if self.spec.frequency_penalty else {}),
                "max_tokens": self.spec.max_tokens,
                "stop": list(stop),
                "schema": schema,
                "seed": self._deps.seed,
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

    def request(self, action: Callable[[], T]) -> T:
        """One provider request outside the journal (a capability probe), under the run's budget check,
        concurrency cap, rate limit and retry policy like every call."""
        return self._send(action)

    def _send(self, action: Callable[[], T], keep: Callable[[T], None] | None = None) -> T:
        """Run one provider request under the budget, concurrency cap, rate limit and retry policy;
        ``keep`` stores the reply before the concurrency slot is released."""
        deps = self._deps
        if deps.budget is not None:
            deps.budget.check()
        spec = self.spec
        policy = RetryPolicy(spec.max_retries, spec.retry_base_delay, spec.retry_max_delay)

        def limited() -> T:
            if deps.rate_limiter is not None:
                deps.rate_limiter.acquire()
            with deps.limiter:
                reply = within_deadline(action, spec.deadline) if self._openai_style else action()
                if keep is not None:
                    keep(reply)
                return reply

        def count_retry() -> None:
            with deps.stats.lock:
                deps.stats.retries[self.role] = deps.stats.retries.get(self.role, 0) + 1

        if not self._openai_style:
            return limited()
        return call_with_retries(limited, role=self.role, where=self.where, policy=policy, on_retry=count_retry)

    def _invoke(
        self, request: list[BaseMessage] | str, kwargs: dict[str, Any]
    ) -> tuple[str, dict[str, int], bool, list[DigitAlternatives]]:
        """Call the model; returns text, token usage (estimated when the provider gives none), truncation,
        and the alternatives at digit tokens when log-probabilities were asked for and given."""
        usage = empty_usage()
        usage["calls"] = 1
        prompt_text = request if isinstance(request, str) else "\n".join(str(m.content) for m in request)
        alternatives: list[DigitAlternatives] = []
        if self.route is not None:
            messages = [HumanMessage(content=request)] if isinstance(request, str) else request  # as ChatOpenAI does
            reply = self.route.send(messages, kwargs)
            choice = reply_choices(reply)[0]
            if kwargs.get("logprobs") and choice.logprobs is not None:
                alternatives = digit_alternatives(choice.text, choice.logprobs.get("content") or [])
            counted = reply_usage(reply)
            if counted:
                usage.update(counted)
                return choice.text, usage, choice.finish_reason == "length", alternatives
            text, truncated = choice.text, choice.finish_reason == "length"
        elif self.is_chat:
            with reply_shape_checked(self._openai_style):
                message = self.model.invoke(request, **kwargs)
            text = message.content if isinstance(message.content, str) else str(message.content)
            metadata = message.response_metadata or {}
            truncated = metadata.get("finish_reason") == "length"
            if kwargs.get("logprobs") and isinstance(metadata.get("logprobs"), dict):
                alternatives = digit_alternatives(text, metadata["logprobs"].get("content") or [])
            meta = getattr(message, "usage_metadata", None)
            if meta:
                usage["input_tokens"] = int(meta.get("input_tokens", 0))
                usage["output_tokens"] = int(meta.get("output_tokens", 0))
                cached = (meta.get("input_token_details") or {}).get("cache_read")
                if cached:  # prompt tokens the server reused from its cache instead of processing them
                    usage["cached_input_tokens"] = int(cached)
                return text, usage, truncated, alternatives
        else:
            with reply_shape_checked(self._openai_style):
                result = self.model.generate([prompt_text], **kwargs)
            generation = result.generations[0][0]
            text = generation.text
            truncated = (generation.generation_info or {}).get("finish_reason") == "length"
            token_usage = (result.llm_output or {}).get("token_usage") or {}
            if token_usage:
                usage["input_tokens"] = int(token_usage.get("prompt_tokens", 0))
                usage["output_tokens"] = int(token_usage.get("completion_tokens", 0))
                return text, usage, truncated, alternatives
        usage["input_tokens"] = estimate_tokens(prompt_text)
        usage["output_tokens"] = estimate_tokens(text)
        usage["estimated_calls"] = 1
        return text, usage, truncated, alternatives


def call_structured(
    caller: RoleCaller,
    prompt: str,
    parse: Callable[[dict[str, Any]], T],
    *,
    retries: int,
    sample: int = 0,
    json_schema: dict[str, Any] | None = None,
    first: CallOutcome | None = None,
    logprobs: bool = False,
    whole: bool = False,
) -> StructuredOutcome[T]:
    """Ask for JSON, parse and validate it; on failure re-ask with the error, up to ``retries`` times.

    ``first`` is an already received first reply (from a request with ``n``). ``whole``: a reply cut off
    at the length limit is unusable even where the repaired JSON parses, because its last field is cut (a
    proposed prompt would end mid-word)."""
    messages: list[BaseMessage] = [HumanMessage(content=prompt)]
    outcome: StructuredOutcome[T] = StructuredOutcome(value=None, attempts=0)
    seed_basis: str | None = caller.key_for(messages, json_schema, sample=sample)
    for attempt in range(retries + 1):
        if attempt == 0 and first is not None:
            call = first
        else:
            call = caller.complete(
                messages, sample=sample, json_schema=json_schema, seed_basis=seed_basis, logprobs=logprobs
            )
        outcome.attempts += 1
        outcome.usage = add_usage(outcome.usage, call.usage)
        outcome.raw = call.text
        try:
            value = parse_first_valid(call.text, parse)
            if whole and call.truncated:
                raise OutputParseError("the reply is incomplete")
            outcome.value = value
            outcome.alternatives = call.alternatives
            return outcome
        except OutputParseError as error:
            if call.truncated:
                error = type(error)(f"{error} (the reply hit the length limit and was cut off; answer more briefly)")
            outcome.errors.append(str(error))
            outcome.error_kinds.append(error.kind)
            log.warning("role=%s unusable reply (attempt %d): %s", caller.role, outcome.attempts, error)
            if isinstance(error, RejectedContent):
                # A fresh request naming the refusal, with its own sampling seed (the request is the key).
                messages = [HumanMessage(content=render(RETRY_REJECTED, request=prompt, error=str(error)))]
                seed_basis = None
                continue
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
    first_sample: int = 0,
    whole: bool = False,
) -> list[StructuredOutcome[T]]:
    """``count`` independent structured samples; each unusable one is retried on its own.

    Without ``n`` the samples run in parallel (each under the global concurrency cap); each is
    keyed and seeded by its index, so the result does not depend on their timing."""
    if count > 1 and not caller.samples_with_n:
        with ThreadPoolExecutor(max_workers=count) as pool:
            futures = [
                pool.submit(
                    call_structured,
                    caller,
                    prompt,
                    parse,
                    retries=retries,
                    sample=first_sample + index,
                    json_schema=json_schema,
                    whole=whole,
                )
                for index in range(count)
            ]
            return [future.result() for future in futures]
    replies = caller.complete_samples(
        [HumanMessage(content=prompt)], count, json_schema=json_schema, first_sample=first_sample
    )
    return [
        call_structured(
            caller,
            prompt,
            parse,
            retries=retries,
            sample=first_sample + index,
            json_schema=json_schema,
            first=reply,
            whole=whole,
        )
        for index, reply in enumerate(replies)
    ]
