"""A local OpenAI-compatible HTTP server for tests: deterministic replies and a request log.

Real HTTP on 127.0.0.1 for ``/v1/chat/completions`` (with ``n``, and ``stream`` as server-sent events) and
``/v1/completions``.
Replies come from :mod:`tests.support.responder`; every request is logged with a content
hash so tests can count calls and spot repeats across processes.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from support.responder import respond, task_of

FAULT_KINDS = ("429", "500", "503", "timeout", "drop", "malformed", "truncated", "empty", "prose")
CONTENT_FAULTS = {"truncated", "empty", "prose"}


def request_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def joined_messages(messages: list[dict[str, Any]]) -> str:
    kinds = {"system": "system", "user": "human", "assistant": "ai"}
    return "\n".join(f"{kinds.get(m.get('role', ''), m.get('role'))}: {m.get('content', '')}" for m in messages)


def token_logprobs(reply: str) -> list[dict[str, Any]]:
    """One token per character; at a digit d of 1-5 the alternatives d (0.6), d-1 (0.3) and d+1 (0.1), so an
    expected score is d - 0.2 where both neighbours are scores (a known distribution, checked by tests)."""
    content = []
    for char in reply:
        options = [(char, 0.0)]
        if char in "12345":
            digit = int(char)
            options = [(char, math.log(0.6))]
            options += [(str(n), math.log(p)) for n, p in ((digit - 1, 0.3), (digit + 1, 0.1)) if 1 <= n <= 5]
        content.append(
            {
                "token": char,
                "logprob": options[0][1],
                "top_logprobs": [{"token": t, "logprob": lp} for t, lp in options],
            }
        )
    return content


def is_n_probe(body: dict[str, Any]) -> bool:
    """drpo's one-token request asking whether ``n`` is honoured (drpo.llm.n_support)."""
    return (body.get("max_tokens") or body.get("max_completion_tokens")) == 1 and body.get("n") == 2


class _Listener(ThreadingHTTPServer):
    request_queue_size = 512  # load tests open many connections at once; the default 5 resets them


class FakeOpenAIServer:
    """Start with ``with FakeOpenAIServer(...) as server: server.base_url``."""

    def __init__(
        self,
        log_path: Path | None = None,
        latency: float = 0.0,
        required_key: str | None = None,
        echo_authorization: bool = False,
        known_models: set[str] | None = None,
        fault_rate: float = 0.0,
        fault_kinds: tuple[str, ...] = FAULT_KINDS,
        timeout_sleep: float = 1.5,
        empty_tasks: set[str] | None = None,
        n_mode: str = "honour",
        reply_shape: str = "completion",
        echo_key_in_answers: bool = False,
    ) -> None:
        self.log_path = log_path
        self.latency = latency
        self.fault_rate = fault_rate
        self.fault_kinds = fault_kinds
        self.timeout_sleep = timeout_sleep
        self.empty_tasks = empty_tasks if empty_tasks is not None else set()  # a broken provider; clear() fixes it
        self.n_mode = n_mode  # honour | ignore (one choice whatever n says) | refuse (400 when n > 1)
        # completion | html (a web page, status 200) | no-choices (choices: []) | hang (reads the request,
        # never answers) | trickle (headers, then one byte every 0.2 s): until the server is closed
        self.reply_shape = reply_shape
        self._closing = threading.Event()
        self._attempts: dict[str, int] = {}
        self._faults_given: dict[str, int] = {}
        self.required_key = required_key
        self.echo_authorization = echo_authorization  # a careless provider: the 401 body repeats the key
        self.echo_key_in_answers = echo_key_in_answers  # ... or its ordinary answers do
        self.known_models = known_models
        self.requests: list[dict[str, Any]] = []
        self.received = 0  # requests read so far, answered or not (requests lists the answered ones)
        self.abandoned = 0  # streamed replies the client stopped reading
        self.keep_bodies = False  # record each request's messages/prompt and parameters too
        self._lock = threading.Lock()
        self._httpd = _Listener(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def _record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(entry)
            if self.log_path is not None:
                with self.log_path.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(entry) + "\n")

    def fault_for(self, body_hash: str, structured: bool) -> str | None:
        """Whether a request fails is deterministic per (request, attempt), so a retried request can succeed."""
        with self._lock:
            attempt = self._attempts.get(body_hash, 0)
            self._attempts[body_hash] = attempt + 1
        if not self.fault_rate:
            return None
        roll = int(hashlib.sha256(f"{body_hash}:{attempt}".encode()).hexdigest()[:8], 16)
        if (roll % 10_000) / 10_000 >= self.fault_rate:
            return None
        kinds = [kind for kind in self.fault_kinds if structured or kind not in CONTENT_FAULTS]
        if not kinds:
            return None
        with self._lock:  # the least used kind, so a dozen faults cover every kind whatever the request texts
            # content faults first where they can happen: fewer requests can carry them
            kind = min(kinds, key=lambda known: (self._faults_given.get(known, 0), known not in CONTENT_FAULTS))
            self._faults_given[kind] = self._faults_given.get(kind, 0) + 1
            return kind

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _send_stream(self, kind: str, reply: str, model: str, usage: dict[str, int] | None) -> None:
                """The reply as server-sent events, a few characters a chunk, then [DONE]."""
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                pieces = [reply[start : start + 7] for start in range(0, len(reply), 7)]
                events: list[dict[str, Any]] = []
                for index, piece in enumerate(pieces):
                    last = index == len(pieces) - 1
                    if kind == "chat":
                        delta = {"role": "assistant", "content": piece} if index == 0 else {"content": piece}
                        choice = {"index": 0, "delta": delta, "finish_reason": "stop" if last else None}
                    else:
                        choice = {"index": 0, "text": piece, "finish_reason": "stop" if last else None}
                    events.append({"id": "fake", "object": f"{kind}.chunk", "model": model, "choices": [choice]})
                if usage is not None:
                    events.append(
                        {"id": "fake", "object": f"{kind}.chunk", "model": model, "choices": [], "usage": usage}
                    )
                try:
                    for event in events:
                        self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                        self.wfile.flush()
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                except OSError:  # the client went away mid-stream
                    with server._lock:
                        server.abandoned += 1
                self.close_connection = True

            def _fault(self, fault: str) -> bool:
                """Answer with a transport fault; True when the request is finished."""
                if fault == "429":
                    data = json.dumps({"error": {"message": "rate limited", "type": "rate_limit"}}).encode()
                    self.send_response(429)
                    self.send_header("Retry-After", "0.05")
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return True
                if fault in {"500", "503"}:
                    self._send(int(fault), {"error": {"message": f"injected {fault}"}})
                    return True
                if fault == "timeout":
                    time.sleep(server.timeout_sleep)
                    self.close_connection = True
                    return True
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return True
                if fault == "malformed":
                    data = b'{"id": "x", "choices": [ {"message": '
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return True
                return False

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    server.received += 1
                auth = self.headers.get("Authorization", "")
                if server.required_key is not None and auth != f"Bearer {server.required_key}":
                    message = "Incorrect API key provided"
                    if server.echo_authorization:
                        message += f": {auth.removeprefix('Bearer ')} (sent as {auth})"
                    self._send(401, {"error": {"message": message, "type": "invalid_request_error"}})
                    return
                if server.known_models is not None and body.get("model") not in server.known_models:
                    self._send(404, {"error": {"message": f"model {body.get('model')} does not exist"}})
                    return
                if server.reply_shape == "hang":
                    server._closing.wait(120)
                    return
                if server.reply_shape == "trickle":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "1000000")
                    self.end_headers()
                    while not server._closing.wait(0.2):
                        try:
                            self.wfile.write(b" ")
                            self.wfile.flush()
                        except OSError:  # the client gave up
                            return
                    return
                if server.reply_shape == "html":
                    page = b"<!DOCTYPE html><html><body><h1>Welcome to nginx!</h1></body></html>"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(page)))
                    self.end_headers()
                    self.wfile.write(page)
                    return
                if server.reply_shape == "no-choices":
                    self._send(200, {"id": "x", "object": "chat.completion", "model": body.get("model"), "choices": []})
                    return
                started = time.time()
                if server.latency:
                    time.sleep(server.latency)
                body_hash = request_hash(body)
                messages = body.get("messages", [])
                structured = self.path.endswith("/chat/completions") and task_of(joined_messages(messages)) != "answer"
                fault = server.fault_for(body_hash, structured)
                if fault is not None:
                    server._record(
                        {
                            "hash": body_hash,
                            "kind": "fault",
                            "fault": fault,
                            "start": started,
                            "end": time.time(),
                            "n": 0,
                        }
                    )
                    if self._fault(fault):
                        return
                if self.path.endswith("/chat/completions"):
                    # Structured replies derive from the task (first user message) and the seed, so a
                    # re-ask after an unusable reply gets what the first attempt would have got.
                    users = [m for m in messages if m.get("role") == "user"]
                    text = str(users[0].get("content", "")) if structured and users else joined_messages(messages)
                    count = int(body.get("n") or 1)
                    if count > 1 and server.n_mode == "refuse":
                        self._send(400, {"error": {"message": "n > 1 is not supported", "type": "invalid_request"}})
                        return
                    if server.n_mode == "ignore":
                        count = 1
                    seed = int(body.get("seed") or 0)
                    replies = [respond(text, seed + index) for index in range(count)]
                    if structured and task_of(text) in server.empty_tasks:
                        replies = ["" for _ in replies]
                    if server.echo_key_in_answers and not structured:
                        replies = [f"{reply} (asked with {auth.removeprefix('Bearer ')})" for reply in replies]
                    elif fault == "truncated":
                        replies = [reply[: len(reply) // 2] for reply in replies]
                    elif fault == "empty":
                        replies = ["" for _ in replies]
                    elif fault == "prose":
                        replies = [f"Sure, here you go:\n{reply}\nHope this helps!" for reply in replies]
                    choices = [
                        {"index": i, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}
                        for i, reply in enumerate(replies)
                    ]
                    if body.get("logprobs"):
                        for choice, reply in zip(choices, replies, strict=True):
                            choice["logprobs"] = {"content": token_logprobs(reply)}
                    kind = "chat"
                elif self.path.endswith("/completions"):
                    text = str(body.get("prompt", ""))
                    replies = [respond(text, int(body.get("seed") or 0)) + "\n<END>\nextra"]
                    choices = [{"index": 0, "text": replies[0], "finish_reason": "stop"}]
                    kind = "completion"
                else:
                    self._send(404, {"error": {"message": f"unknown path {self.path}"}})
                    return
                entry_body = {"body": body} if server.keep_bodies else {}
                server._record(
                    {
                        **entry_body,
                        "hash": body_hash,
                        "kind": kind,
                        "task": "probe" if is_n_probe(body) else task_of(text),
                        "tail": text[-160:],  # an answer request ends with its query: tests find requests by it
                        "start": started,
                        "end": time.time(),
                        "n": len(replies),
                    }
                )
                prompt_tokens = len(text) // 4
                completion_tokens = sum(len(reply) // 4 for reply in replies)
                if body.get("stream"):
                    usage = {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": completion_tokens,
                        "total_tokens": prompt_tokens + completion_tokens,
                    }
                    wanted = (body.get("stream_options") or {}).get("include_usage")
                    self._send_stream(kind, replies[0], body.get("model", "fake"), usage if wanted else None)
                    return
                self._send(
                    200,
                    {
                        "id": "fake",
                        "object": "chat.completion" if kind == "chat" else "text_completion",
                        "created": 0,
                        "model": body.get("model", "fake"),
                        "choices": choices,
                        "usage": {
                            "prompt_tokens": prompt_tokens,
                            "completion_tokens": completion_tokens,
                            "total_tokens": prompt_tokens + completion_tokens,
                        },
                    },
                )

        return Handler


@contextmanager
def fake_server_process(latency: float, log: Path) -> Iterator[str]:
    """The fake server in its own process (benchmarks: its work does not share the measured process's
    interpreter); yields its base URL, kills it on exit."""
    import os
    import subprocess
    import sys

    tests = Path(__file__).resolve().parent.parent
    process = subprocess.Popen(
        [sys.executable, "-m", "support.fake_openai", str(latency), str(log)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(tests)},
    )
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip()
    finally:
        process.kill()
        process.wait(timeout=30)


def serve_forever_main() -> None:
    """``python -m support.fake_openai LATENCY LOG``: the server in its own process (benchmarks), so its
    work does not share the measured process's interpreter. Prints the base URL, then serves until killed."""
    import sys
    import time

    latency, log = float(sys.argv[1]), Path(sys.argv[2])
    with FakeOpenAIServer(log_path=log, latency=latency) as server:
        print(server.base_url, flush=True)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    serve_forever_main()
