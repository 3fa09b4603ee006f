"""drpo's own chat-completions client: it sends what ChatOpenAI sends, reads what ChatOpenAI reads, raises
errors the retry policy classifies as it classifies the SDK's, keeps connections alive, and steps aside
where only ChatOpenAI does the job (a proxy, tracing, organisation headers)."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from drpo.errors import ModelCallError
from drpo.graph.context import Services
from drpo.llm.chat_client import (
    ChatCompletionsClient,
    LeanRoute,
    chat_body,
    lean_client_unusable,
    reply_choices,
    reply_usage,
    wire_messages,
)
from drpo.llm.retry import (
    NoChoices,
    NotAChatCompletion,
    RetryPolicy,
    ServerStatusError,
    ServerTimeout,
    ServerUnreachable,
    call_with_retries,
    classify,
    describe_fatal,
)
from drpo.run.services import build_services
from drpo.settings import load_settings
from drpo.store.embeddings import Embedder
from drpo.store.run_dir import RunDir
from support.cli import fake_server_config
from support.fake_openai import FakeOpenAIServer

COMPLETION = {
    "id": "x",
    "object": "chat.completion",
    "created": 0,
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
}


class Recording(ThreadingHTTPServer):
    """Answers each POST with the next scripted (status, headers, body), recording bodies and connections."""

    daemon_threads = True

    def __init__(
        self, replies: list[tuple[int, dict[str, str], bytes]], keep_alive: bool, idle_timeout: float | None = None
    ) -> None:
        self.replies = replies
        self.bodies: list[dict[str, Any]] = []
        self.peers: list[tuple[str, int]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"
            timeout = idle_timeout  # closes a kept-alive connection idle this long

            def log_message(self, *args: Any) -> None:
                return

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                server.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                server.peers.append(self.client_address)
                status, headers, data = server.replies.pop(0) if len(server.replies) > 1 else server.replies[0]
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/v1"


@contextmanager
def serving(
    *replies: tuple[int, dict[str, str], bytes],
    keep_alive: bool = True,
    idle_timeout: float | None = None,
    tls: ssl.SSLContext | None = None,
) -> Iterator[Recording]:
    server = Recording(list(replies) or [(200, {}, json.dumps(COMPLETION).encode())], keep_alive, idle_timeout)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def ok(reply: dict[str, Any] = COMPLETION) -> tuple[int, dict[str, str], bytes]:
    return 200, {}, json.dumps(reply).encode()


MESSAGES = [SystemMessage("be brief"), HumanMessage("q"), AIMessage("a"), HumanMessage("q2 — naïve")]
CALLS: list[dict[str, Any]] = [
    {},
    {"seed": 5, "stop": ["</s>"]},
    {"seed": 9, "extra_body": {"response_format": {"type": "json_schema", "json_schema": {"name": "r"}}}},
    {"seed": 1, "logprobs": True, "top_logprobs": 5},
    {"n": 2, "max_tokens": 1, "temperature": 1.0},
    {"seed": 3, "n": 3},
]


@pytest.mark.parametrize(
    "role_params",
    [{"temperature": 0.0, "max_tokens": 800}, {"temperature": 0.7, "max_tokens": 50, "frequency_penalty": 0.3}],
)
def test_the_lean_client_sends_what_chat_openai_sends(role_params: dict[str, Any]) -> None:
    """Same fields, same values: servers sample alike, and a run switching clients keeps its keys and seeds."""
    from langchain_openai import ChatOpenAI

    with serving() as server:
        model = ChatOpenAI(model="fake", api_key="k", base_url=server.base_url, max_retries=0, **role_params)
        route = LeanRoute(ChatCompletionsClient(server.base_url, "k", 30), "fake", role_params)
        for call in CALLS:
            model.generate([MESSAGES], **call)
            route.send(MESSAGES, call)
    by_chat_openai, by_lean_client = server.bodies[0::2], server.bodies[1::2]
    assert len(by_lean_client) == len(CALLS)
    assert by_lean_client == by_chat_openai


def test_replies_are_read_as_chat_openai_reads_them() -> None:
    reply = {
        **COMPLETION,
        "choices": [
            {"index": 0, "message": {"content": None}, "finish_reason": "length", "logprobs": {"content": []}},
            {"index": 1, "message": {"content": "two"}, "finish_reason": "stop"},
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 8}},
    }
    first, second = reply_choices(reply)
    assert (first.text, first.finish_reason, first.logprobs) == ("", "length", {"content": []})
    assert (second.text, second.finish_reason, second.logprobs) == ("two", "stop", None)
    assert reply_usage(reply) == {"input_tokens": 11, "output_tokens": 3, "cached_input_tokens": 8}
    assert reply_usage({**reply, "usage": None}) is None  # no usage: the caller estimates and says so
    with pytest.raises(NotAChatCompletion):
        reply_choices({"choices": ["not a choice"]})


@pytest.mark.parametrize(
    ("reply", "error", "kind"),
    [
        ((401, {}, b'{"error": {"message": "Incorrect API key provided"}}'), ServerStatusError, "fatal"),
        ((404, {}, b'{"error": {"message": "model x does not exist"}}'), ServerStatusError, "fatal"),
        ((400, {}, b'{"error": {"message": "n > 1 is not supported"}}'), ServerStatusError, "fatal"),
        ((429, {"Retry-After": "0.05"}, b'{"error": {"message": "rate limited"}}'), ServerStatusError, "transient"),
        ((500, {}, b'{"error": {"message": "injected 500"}}'), ServerStatusError, "transient"),
        ((503, {}, b"Service Unavailable"), ServerStatusError, "transient"),
        ((200, {"Content-Type": "text/html"}, b"<html>nginx</html>"), NotAChatCompletion, "fatal"),
        ((200, {}, b'{"id": "x", "choices": [ {"message": '), json.JSONDecodeError, "transient"),
        ((200, {}, b'{"id": "x", "choices": []}'), NoChoices, "transient"),
        ((200, {}, b'{"error": {"message": "upstream failed"}}'), NotAChatCompletion, "fatal"),
    ],
)
def test_server_faults_raise_what_the_retry_policy_classifies(
    reply: tuple[int, dict[str, str], bytes], error: type[Exception], kind: str
) -> None:
    with serving(reply) as server:
        client = ChatCompletionsClient(server.base_url, "k", 30)
        with pytest.raises(error) as raised:
            client.create({"model": "m", "messages": []})
    assert classify(raised.value) == kind
    if isinstance(raised.value, ServerStatusError):
        assert raised.value.status_code == reply[0]
        said = json.loads(reply[2])["error"]["message"] if reply[2].startswith(b"{") else reply[2].decode()
        assert said in raised.value.message  # the server's own words reach the one-line error


def test_fatal_status_errors_are_named_by_status() -> None:
    for status, meaning in [(401, "authentication failed (401)"), (404, "model or endpoint not found (404)")]:
        described = describe_fatal("base", "fake at http://x", ServerStatusError(status, "nope"))
        assert isinstance(described, ModelCallError) and meaning in str(described) and "nope" in str(described)
    unreachable = describe_fatal("base", "fake", ServerUnreachable("ConnectionRefusedError"))
    assert "cannot reach the server" in str(unreachable)


def test_retry_after_is_honoured_and_a_healed_fault_returns_the_reply() -> None:
    limited = (429, {"Retry-After": "0.01"}, b'{"error": {"message": "slow down"}}')
    with serving(limited, ok()) as server:
        client = ChatCompletionsClient(server.base_url, "k", 30)
        retries: list[int] = []
        policy = RetryPolicy(max_retries=2, base_delay=30.0, max_delay=30.0)  # only Retry-After keeps this short
        reply = call_with_retries(
            lambda: client.create({"model": "m", "messages": []}),
            role="base",
            where="fake",
            policy=policy,
            on_retry=lambda: retries.append(1),
        )
    assert reply["choices"][0]["message"]["content"] == "hi" and len(retries) == 1


def test_refused_connections_and_silent_servers_are_transient_then_named() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    with pytest.raises(ServerUnreachable) as refused:
        ChatCompletionsClient(f"http://127.0.0.1:{dead}/v1", "k", 5).create({})
    assert classify(refused.value) == "transient" and not isinstance(refused.value, ServerTimeout)
    with pytest.raises(ModelCallError, match="cannot reach the server"):
        call_with_retries(
            lambda: ChatCompletionsClient(f"http://127.0.0.1:{dead}/v1", "k", 5).create({}),
            role="base",
            where="fake",
            policy=RetryPolicy(max_retries=1, base_delay=0.0),
            on_retry=lambda: None,
        )
    with socket.socket() as silent:  # accepts the connection, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        with pytest.raises(ServerTimeout):
            ChatCompletionsClient(f"http://127.0.0.1:{port}/v1", "k", 0.3).create({})


def test_connections_are_kept_alive_and_a_closed_one_is_replaced() -> None:
    with serving(ok(), keep_alive=True) as server:
        client = ChatCompletionsClient(server.base_url, "k", 30)
        for _ in range(3):
            client.create({"model": "m", "messages": []})
        assert len({port for _, port in server.peers}) == 1  # one connection for three requests
        for connection in client._idle:  # the server's side went away while the connection was idle
            assert connection.sock is not None
            connection.sock.shutdown(socket.SHUT_RDWR)
        client.create({"model": "m", "messages": []})
        assert len(server.bodies) == 4
    with serving(ok(), keep_alive=False) as closing:
        client = ChatCompletionsClient(closing.base_url, "k", 30)
        client.create({"model": "m", "messages": []})
        client.create({"model": "m", "messages": []})
        assert client._idle == [] and len(closing.bodies) == 2  # HTTP/1.0: a connection each, none kept


def test_a_request_on_a_connection_the_server_just_closed_goes_again_on_a_new_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server may close a kept-alive connection just as a request goes out on it (after the idle check):
    the request is sent once more on a new connection, not reported as a transport fault."""
    import time

    import drpo.llm.chat_client as chat_client

    with serving(ok(), keep_alive=True, idle_timeout=0.2) as server:
        client = ChatCompletionsClient(server.base_url, "k", 30)
        client.create({"model": "m", "messages": []})
        time.sleep(0.6)  # the server closes the idle connection
        monkeypatch.setattr(chat_client, "_readable", lambda sock: False)  # as if it closed after the check
        reply = client.create({"model": "m", "messages": [{"role": "user", "content": "again"}]})
    assert reply["choices"][0]["message"]["content"] == "hi"
    assert len({port for _, port in server.peers}) == 2 and len(server.bodies) == 2


def test_https_verifies_the_server_with_the_certificates_the_sdk_trusts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SSL_CERT_FILE when set (as httpx reads it), else certifi's bundle, which a self-signed server is not in."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert)]
        + ["-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    with serving(tls=tls) as server:
        url = f"https://127.0.0.1:{server.server_port}/v1"
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        assert reply_choices(ChatCompletionsClient(url, "k", 10).create({"model": "m"}))[0].text == "hi"
        monkeypatch.delenv("SSL_CERT_FILE")
        with pytest.raises(ServerUnreachable, match="CERTIFICATE_VERIFY_FAILED"):
            ChatCompletionsClient(url, "k", 10).create({"model": "m"})
    assert len(server.bodies) == 1  # the unverified server never saw the request


def test_roles_fall_back_to_chat_openai_where_only_it_does_the_job() -> None:
    local = "http://127.0.0.1:8000/v1"
    assert lean_client_unusable(local, {}) is None
    assert lean_client_unusable(None, {}) is None  # api.openai.com
    assert "OPENAI_ORG_ID" in str(lean_client_unusable(local, {"OPENAI_ORG_ID": "org-1"}))
    assert "LangSmith" in str(lean_client_unusable(local, {"LANGSMITH_TRACING": "true"}))
    assert lean_client_unusable(local, {"LANGSMITH_TRACING": "false"}) is None
    assert "OPENAI_BASE_URL" in str(lean_client_unusable(None, {"OPENAI_BASE_URL": "http://elsewhere/v1"}))
    assert lean_client_unusable(local, {"OPENAI_BASE_URL": "http://elsewhere/v1"}) is None  # base_url wins
    proxied = {"https_proxy": "http://proxy:3128", "no_proxy": "internal.example"}
    assert "proxy" in str(lean_client_unusable(None, proxied))
    assert lean_client_unusable("https://internal.example/v1", proxied) is None


def test_bodies_carry_text_messages_only() -> None:
    assert wire_messages([HumanMessage("a"), AIMessage("b")]) == [
        {"content": "a", "role": "user"},
        {"content": "b", "role": "assistant"},
    ]
    with pytest.raises(ValueError, match="text messages only"):
        wire_messages([HumanMessage(content=[{"type": "image_url", "image_url": {"url": "x"}}])])
    body = chat_body("m", [], {"max_tokens": 5, "seed": None, "extra_body": {"response_format": {"type": "json"}}})
    assert body == {
        "model": "m",
        "stream": False,
        "messages": [],
        "max_completion_tokens": 5,
        "response_format": {"type": "json"},
    }


def services_for(tmp_path: Path, name: str, embedder: Embedder, *, eager_models: bool) -> Services:
    with FakeOpenAIServer() as server:
        config = fake_server_config(tmp_path / f"{name}.yaml", server.base_url)
    settings = load_settings(config, {"runs_dir": str(tmp_path / "runs"), "store_dir": str(tmp_path / "store")})
    run_dir = RunDir(tmp_path / "runs" / name)
    run_dir.root.mkdir(parents=True)
    return build_services(settings, run_dir, embedder=embedder, eager_models=eager_models)


def test_a_role_builds_its_chat_openai_only_when_asked_for_it(tmp_path: Path, embedder: Embedder) -> None:
    from langchain_openai import ChatOpenAI

    lazy = services_for(tmp_path, "lazy", embedder, eager_models=False).callers["base"]
    assert lazy.route is not None and lazy.is_chat
    assert not isinstance(lazy._model, ChatOpenAI)  # a prompt optimization never asks: never built
    assert isinstance(lazy.model, ChatOpenAI) and lazy.model is lazy.model  # built once, on first use
    eager = services_for(tmp_path, "eager", embedder, eager_models=True).callers["base"]
    assert isinstance(eager._model, ChatOpenAI) and eager.route is not None


def test_with_tracing_on_every_role_goes_through_chat_openai(
    tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LANGSMITH_TRACING", "true")
    callers = services_for(tmp_path, "traced", embedder, eager_models=False).callers
    assert all(caller.route is None for caller in callers.values())
    assert all(caller.is_chat and caller._model is caller.model for caller in callers.values())  # built at once


def test_a_role_on_the_lean_client_reads_usage_cut_replies_and_text_requests_as_before(tmp_path: Path) -> None:
    """Through RoleCaller: a text request goes as one user message (as ChatOpenAI sends it), usage and
    truncation come from the reply, and a reply without usage is estimated and counted as estimated."""
    import threading as threads

    from drpo.llm.caller import CallerDeps, CallStats, RoleCaller
    from drpo.settings import RoleSpec
    from drpo.store.call_journal import CallJournal

    cut = {**COMPLETION, "choices": [{"index": 0, "message": {"content": "half"}, "finish_reason": "length"}]}
    without_usage = {key: value for key, value in COMPLETION.items() if key != "usage"}
    with serving(ok(cut), ok(without_usage)) as server:
        deps = CallerDeps(
            journal=CallJournal.sqlite(tmp_path / "journal.sqlite"),
            limiter=threads.BoundedSemaphore(2),
            stats=CallStats(),
            seed=0,
        )
        route = LeanRoute(ChatCompletionsClient(server.base_url, "k", 30), "fake", {"temperature": 0.0})
        caller = RoleCaller("base", RoleSpec(), lambda: None, "fake:m", deps, openai_style=True, route=route)
        first = caller.complete("a plain text request")
        second = caller.complete([HumanMessage("another")])
    assert server.bodies[0]["messages"] == [{"content": "a plain text request", "role": "user"}]
    assert (first.text, first.truncated, first.usage["input_tokens"], first.usage["output_tokens"]) == (
        "half",
        True,
        7,
        2,
    )
    assert second.text == "hi" and second.usage["estimated_calls"] == 1 and not second.truncated
    assert caller._model is None  # ChatOpenAI was never needed
