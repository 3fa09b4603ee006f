"""A lean client for OpenAI-compatible chat completions, the request path of drpo's own chat roles.

A search makes hundreds of requests, a few at a time, each on the critical path of the next round. Through
ChatOpenAI and the openai SDK a request costs about four times the interpreter time it costs over plain
``http.client``, time that other requests of the round wait for, and importing them costs half a second
before the first request can leave. This client sends the body ChatOpenAI would send for the same call
(the same fields and values, so servers, seeds and journal keys see no difference) and raises errors that
``drpo.llm.retry`` classifies like the SDK's. Roles fall back to ChatOpenAI where it does more than this
client (a proxy, LangSmith tracing, OpenAI organisation headers): see ``lean_client_unusable``.
"""

from __future__ import annotations

import encodings.idna  # noqa: F401 - a host name's lookup imports it lazily, on a request thread otherwise
import http.client
import json
import os
import select
import socket
import ssl
import threading
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import certifi

from drpo.llm.retry import NoChoices, NotAChatCompletion, ServerStatusError, ServerTimeout, ServerUnreachable

OPENAI_BASE_URL = "https://api.openai.com/v1"
USER_AGENT = "drpo"
# Environment settings ChatOpenAI (the openai SDK, LangSmith) acts on and this client does not.
CHAT_OPENAI_ONLY_ENV = ("OPENAI_ORG_ID", "OPENAI_ORGANIZATION", "OPENAI_PROJECT_ID")
BASE_URL_ENV = ("OPENAI_BASE_URL", "OPENAI_API_BASE")  # where ChatOpenAI sends a role without base_url
# What a kept-alive connection the server has just closed raises (as does a server dropping a new connection).
BROKEN_CONNECTION = (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected)
TRACING_ENV = ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2", "LANGSMITH_TRACING_V2", "LANGCHAIN_TRACING")


def lean_client_unusable(base_url: str | None, environ: dict[str, str] | None = None) -> str | None:
    """Why a chat role must go through ChatOpenAI instead of this client, or None when it need not."""
    env = os.environ if environ is None else environ
    for name in (*CHAT_OPENAI_ONLY_ENV, *(BASE_URL_ENV if base_url is None else ())):
        if env.get(name):
            return f"{name} is set"
    for name in TRACING_ENV:
        if env.get(name, "").strip().lower() in {"1", "true", "yes"}:
            return f"{name} is on (LangSmith traces come from LangChain's client)"
    url = urllib.parse.urlsplit(base_url or OPENAI_BASE_URL)
    proxies = {name[:-6].lower(): value for name, value in env.items() if name.lower().endswith("_proxy") and value}
    proxied = proxies.get(url.scheme) or proxies.get("all")
    if proxied and not urllib.request.proxy_bypass_environment(url.hostname or "", proxies):
        return "a proxy is configured"
    return None


@dataclass
class ChatCompletionsClient:
    """POSTs chat-completion bodies to one server and returns the parsed reply. Thread-safe: idle
    keep-alive connections are pooled and handed to one request at a time."""

    base_url: str
    api_key: str
    timeout: float
    _idle: list[http.client.HTTPConnection] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        parts = urllib.parse.urlsplit(self.base_url.rstrip("/"))
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {self.base_url}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._path = f"{parts.path}/chat/completions"
        self._context = tls_context() if self._https else None

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """One chat completion; raises ServerStatusError, ServerUnreachable, json.JSONDecodeError (a JSON
        reply cut short), NotAChatCompletion (a reply that is no completion) or NoChoices."""
        data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        status, content_type, raw, retry_after = self._post(data)
        if status >= 400:
            raise ServerStatusError(status, _error_message(raw), retry_after)
        try:
            reply = json.loads(raw)
        except ValueError as error:
            if "json" in content_type:
                raise json.JSONDecodeError("the reply is cut short", raw.decode(errors="replace"), 0) from error
            raise NotAChatCompletion(f"a {content_type or 'non-JSON'} reply: {raw[:120]!r}") from error
        if not isinstance(reply, dict) or reply.get("error") or not isinstance(reply.get("choices"), list):
            raise NotAChatCompletion(f"a JSON reply without choices: {str(reply)[:160]}")
        if not reply["choices"]:
            raise NoChoices("the server replied with no choices")
        return reply

    def _post(self, data: bytes) -> tuple[int, str, bytes, str | None]:
        connection, reused = self._connection()
        while True:
            try:
                response, raw = self._exchange(connection, data)
                break
            except BROKEN_CONNECTION as error:
                connection.close()
                if not reused:
                    raise ServerUnreachable(f"{type(error).__name__}: {error}") from error
                # a kept-alive connection the server closed as the request went out: once more on a new one
                connection, reused = self._new_connection(), False
        if response.will_close:
            connection.close()
        else:
            with self._lock:
                self._idle.append(connection)
        content_type = (response.getheader("Content-Type") or "").lower()
        return response.status, content_type, raw, response.getheader("Retry-After")

    def _exchange(self, connection: http.client.HTTPConnection, data: bytes) -> tuple[http.client.HTTPResponse, bytes]:
        """One request and its whole reply on ``connection``; a timeout is ServerTimeout, a broken connection is
        raised as is (the caller knows whether it was a kept-alive one), anything else is ServerUnreachable."""
        headers = {
            "Authorization": f"Bearer {self.api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        try:
            connection.request("POST", self._path, body=data, headers=headers)
            response = connection.getresponse()
            return response, response.read()
        except BROKEN_CONNECTION:
            raise
        except TimeoutError as error:
            connection.close()
            raise ServerTimeout(f"no reply within the {self.timeout:g} s timeout") from error
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            raise ServerUnreachable(f"{type(error).__name__}: {error}") from error

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """An idle connection the server has not closed meanwhile (and True), else a new one (and False)."""
        while True:
            with self._lock:
                connection = self._idle.pop() if self._idle else None
            if connection is None:
                return self._new_connection(), False
            if connection.sock is not None and not _readable(connection.sock):
                return connection, True
            connection.close()  # closed by the server while idle (readable at end of stream)

    def _new_connection(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout, context=self._context)
        return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


def tls_context() -> ssl.SSLContext:
    """Verified TLS with the certificates the openai SDK (httpx) trusts: ``SSL_CERT_FILE`` or ``SSL_CERT_DIR`` when
    set, else certifi's bundle (a system without its own CA store, such as python.org's macOS build, works too)."""
    if os.environ.get("SSL_CERT_FILE"):
        return ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    if os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(capath=os.environ["SSL_CERT_DIR"])
    return ssl.create_default_context(cafile=certifi.where())


def _readable(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)


def _error_message(raw: bytes) -> str:
    """The server's own error message (OpenAI's ``{"error": {"message": ...}}``), else the body's start."""
    try:
        payload = json.loads(raw)
    except ValueError:
        return raw[:200].decode(errors="replace")
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    return str(payload)[:200]


def chat_body(model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> dict[str, Any]:
    """The body ChatOpenAI sends: model, stream, messages, then the parameters in name order, then
    ``extra_body``'s fields. ``max_tokens`` goes as ``max_completion_tokens``, as ChatOpenAI sends it."""
    params = dict(params)
    extra = params.pop("extra_body", None) or {}
    if "max_tokens" in params:
        params["max_completion_tokens"] = params.pop("max_tokens")
    fields = {name: params[name] for name in sorted(params) if params[name] is not None}
    return {"model": model, "stream": False, "messages": messages, **fields, **extra}


ROLE_OF_MESSAGE_TYPE = {"human": "user", "ai": "assistant", "system": "system"}


def wire_messages(messages: list[Any]) -> list[dict[str, str]]:
    """LangChain messages as chat-completion messages (text content only: drpo's requests are text)."""
    wired = []
    for message in messages:
        role = ROLE_OF_MESSAGE_TYPE.get(message.type)
        if role is None or not isinstance(message.content, str):
            raise ValueError(f"the lean chat client sends text messages only, not {message.type}")
        wired.append({"content": message.content, "role": role})
    return wired


@dataclass(frozen=True)
class Choice:
    text: str
    finish_reason: str | None
    logprobs: dict[str, Any] | None


def reply_choices(reply: dict[str, Any]) -> list[Choice]:
    """The choices of a chat completion (``create`` checked there is one); a content of null is empty text."""
    choices = []
    for choice in reply["choices"]:
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            raise NotAChatCompletion(f"a choice without a message: {str(choice)[:160]}")
        logprobs = choice.get("logprobs")
        choices.append(
            Choice(
                text=str(message.get("content") or ""),
                finish_reason=choice.get("finish_reason"),
                logprobs=logprobs if isinstance(logprobs, dict) else None,
            )
        )
    return choices


def reply_usage(reply: dict[str, Any]) -> dict[str, int] | None:
    """Input, output and server-cached input tokens, as ChatOpenAI reads them; None when the server gave none."""
    usage = reply.get("usage")
    if not isinstance(usage, dict):
        return None
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    counted = {
        "input_tokens": int(usage.get("prompt_tokens") or 0),
        "output_tokens": int(usage.get("completion_tokens") or 0),
    }
    return {**counted, "cached_input_tokens": int(cached)} if cached else counted


@dataclass(frozen=True)
class LeanRoute:
    """One role's way to its server through ChatCompletionsClient: the model name it sends and the role's
    sampling parameters, which a call's own parameters override."""

    client: ChatCompletionsClient
    model: str
    params: dict[str, Any]

    def send(self, messages: list[Any], call_params: dict[str, Any]) -> dict[str, Any]:
        return self.client.create(chat_body(self.model, wire_messages(messages), {**self.params, **call_params}))
