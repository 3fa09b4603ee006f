"""``drpo serve``: a finished run behind an OpenAI-compatible endpoint, exercised as clients use it.

The server runs as a real subprocess on a free port in front of the fake upstream; the clients are the
official ``openai`` SDK (sync, async, streaming), LangChain's ``ChatOpenAI`` and plain HTTP.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from langchain_openai import ChatOpenAI
from langchain_openai.chat_models.base import _convert_message_to_dict

from drpo.serve.aligned import AlignedChatModel
from drpo.store.embeddings import Embedder
from support.cli import cli_env, drpo, fake_server_config
from support.fake_openai import FakeOpenAIServer
from support.serving import Served, start_serve, stop

pytestmark = pytest.mark.server

RUN = "served-run"
TOKEN = "serve-test-token-5f1c9a27"
TOKEN_ENV = "DRPO_TEST_SERVE_TOKEN"
LIMITS = ["--max-body-bytes", "20000", "--max-messages", "8", "--max-tokens", "512"]


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        server.keep_bodies = True
        yield server


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory, upstream: FakeOpenAIServer) -> Path:
    root = tmp_path_factory.mktemp("serve")
    config = fake_server_config(root / "config.yaml", upstream.base_url, depth=1, beam_width=1, num_actions=2)
    done = drpo("optimize", "--config", str(config), "--run-id", RUN, cwd=root)
    assert done.returncode == 0, done.stderr
    return root


@pytest.fixture(scope="module")
def server(work: Path) -> Iterator[Served]:
    served = start_serve(work, RUN, "--api-key-env", TOKEN_ENV, *LIMITS, name="main", env={TOKEN_ENV: TOKEN})
    yield served
    stop(served)


@pytest.fixture(scope="module")
def broken_upstream_server(work: Path) -> Iterator[Served]:
    """The same run served with its base model's calls sent to a port nothing listens on."""
    served = start_serve(work, RUN, "--base-url", "http://127.0.0.1:9/v1", name="broken")
    yield served
    stop(served)


@pytest.fixture(scope="module")
def aligned(work: Path, embedder: Embedder) -> AlignedChatModel:
    """The run as AlignedChatModel in this process: what the server must send upstream."""
    return AlignedChatModel.from_run(
        RUN, ChatOpenAI(model="x", api_key="x"), runs_dir=work / "drpo_runs", embedder=embedder
    )


def client(server: Served) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key=TOKEN, max_retries=0)


QUERY = "How do I keep basil alive on a windowsill?"


def test_models_lists_each_served_run(server: Served) -> None:
    assert [model.id for model in client(server).models.list()] == [RUN]


def test_a_completion_sends_upstream_what_the_aligned_model_builds(
    server: Served, upstream: FakeOpenAIServer, aligned: AlignedChatModel
) -> None:
    before = len(upstream.requests)
    reply = client(server).chat.completions.create(model=RUN, messages=[{"role": "user", "content": QUERY}])
    assert reply.model == RUN and reply.choices[0].message.content
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
    sent = [entry["body"] for entry in upstream.requests[before:]]
    assert len(sent) == 1
    expected, _ = aligned.request_for(QUERY)
    assert isinstance(expected, list)
    assert sent[0]["messages"] == [_convert_message_to_dict(message) for message in expected]


def test_streamed_text_equals_the_text_returned_whole(server: Served) -> None:
    messages = [{"role": "user", "content": QUERY}]
    whole = client(server).chat.completions.create(model=RUN, messages=messages).choices[0].message.content
    chunks = list(
        client(server).chat.completions.create(
            model=RUN, messages=messages, stream=True, stream_options={"include_usage": True}
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == whole
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]


async def test_the_async_client_streams_and_completes(server: Served) -> None:
    async_client = openai.AsyncOpenAI(base_url=server.url, api_key=TOKEN, max_retries=0)
    messages = [{"role": "user", "content": "Name three uses of vinegar."}]
    whole = await async_client.chat.completions.create(model=RUN, messages=messages)  # type: ignore[arg-type]
    stream = await async_client.chat.completions.create(model=RUN, messages=messages, stream=True)  # type: ignore[arg-type]
    streamed = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
    assert streamed == whole.choices[0].message.content
    await async_client.close()


def test_langchain_chat_openai_works_against_it(server: Served) -> None:
    model = ChatOpenAI(model=RUN, base_url=server.url, api_key=TOKEN, max_retries=0)  # type: ignore[arg-type]
    whole = model.invoke("Why is the sky blue?")
    streamed = "".join(str(chunk.content) for chunk in model.stream("Why is the sky blue?"))
    assert whole.content and streamed == whole.content
    assert whole.usage_metadata is not None and whole.usage_metadata["output_tokens"] > 0


def test_the_callers_system_message_and_history_reach_upstream(
    server: Served, upstream: FakeOpenAIServer, aligned: AlignedChatModel
) -> None:
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    before = len(upstream.requests)
    conversation = [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Bonjour"},
        {"role": "user", "content": QUERY},
    ]
    client(server).chat.completions.create(model=RUN, messages=conversation)  # type: ignore[arg-type]
    built = aligned.build_request(
        [SystemMessage("Answer in French."), HumanMessage("Hi"), AIMessage("Bonjour"), HumanMessage(QUERY)]
    )
    assert isinstance(built, list)
    assert upstream.requests[before]["body"]["messages"] == [_convert_message_to_dict(m) for m in built]


def post(server: Served, body: bytes | dict[str, object], token: str | None = TOKEN) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{server.url}/chat/completions", content=content, headers=headers, timeout=30)


def error_of(response: httpx.Response) -> dict[str, object]:
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    return error


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": RUN, "messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role"),
        ({"model": RUN, "messages": []}, "messages"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
        ({"model": RUN, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100000}, "max_tokens"),
        ({"model": RUN, "messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}, "temperature"),
        ({"model": RUN, "messages": [{"role": "user", "content": "hi"}], "n": 3}, "n"),
        ({"model": RUN, "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]}, "tools"),
        ({"model": RUN, "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}]},
         "messages.1"),
        ({"model": RUN, "messages": [{"role": "user", "content": "hi"}] * 9}, "messages"),
    ],
)  # fmt: skip
def test_a_malformed_request_is_a_400_naming_the_field(server: Served, body: dict[str, object], param: str) -> None:
    response = post(server, body)
    assert response.status_code == 400
    error = error_of(response)
    assert error["param"] == param and error["type"] == "invalid_request_error"


def test_invalid_json_is_a_400(server: Served) -> None:
    response = post(server, b'{"model": "served-run", "messages": [')
    assert response.status_code == 400 and "not valid JSON" in str(error_of(response)["message"])


def test_a_body_over_the_limit_is_a_413(server: Served) -> None:
    big = {"model": RUN, "messages": [{"role": "user", "content": "x" * 30000}]}
    assert post(server, big).status_code == 413


def test_unknown_model_is_a_404(server: Served) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client(server).chat.completions.create(model="no-such-run", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 404 and RUN in str(caught.value)


@pytest.mark.parametrize("token", [None, "wrong-token-value"])
def test_a_missing_or_wrong_key_is_a_401(server: Served, token: str | None) -> None:
    response = post(server, {"model": RUN, "messages": [{"role": "user", "content": "hi"}]}, token=token)
    assert response.status_code == 401 and error_of(response)["code"] == "invalid_api_key"
    models = httpx.get(f"{server.url}/models", headers={"Authorization": f"Bearer {token}"} if token else {})
    assert models.status_code == 401


def test_an_unknown_path_is_an_openai_shaped_404(server: Served) -> None:
    response = httpx.get(f"{server.url}/embeddings")
    assert response.status_code == 404 and error_of(response)["type"] == "not_found_error"


def test_an_upstream_failure_is_a_502_naming_role_and_model(broken_upstream_server: Served) -> None:
    for stream in (False, True):
        response = post(
            broken_upstream_server, {"model": RUN, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
        )
        assert response.status_code == 502
        error = error_of(response)
        assert error["type"] == "upstream_error"
        assert "base model (openai_compatible:fake)" in str(error["message"]) and RUN in str(error["message"])
    assert httpx.get(broken_upstream_server.url.removesuffix("/v1") + "/healthz").json()["status"] == "ok"


def test_a_client_that_leaves_cancels_its_upstream_call(server: Served, upstream: FakeOpenAIServer) -> None:
    upstream.latency = 3.0
    try:
        for stream in (False, True):
            body = {"model": RUN, "messages": [{"role": "user", "content": f"slow {stream}"}], "stream": stream}
            with pytest.raises(httpx.ReadTimeout):
                post_with_timeout(server, body, timeout=0.5)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and server.log_text().count("was cancelled") < 2:
            time.sleep(0.1)
    finally:
        upstream.latency = 0.0
    assert "its upstream call was cancelled" in server.log_text()
    assert "its upstream stream was cancelled" in server.log_text()


def post_with_timeout(server: Served, body: dict[str, object], timeout: float) -> httpx.Response:
    return httpx.post(
        f"{server.url}/chat/completions", json=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=timeout
    )


def test_the_server_survives_everything_above_and_never_logs_the_key(server: Served, work: Path) -> None:
    assert httpx.get(server.url.removesuffix("/v1") + "/healthz").json() == {"status": "ok", "models": 1}
    written = [server.log_text()]
    written += [p.read_text(errors="replace") for p in work.rglob("*") if p.is_file() and p.suffix != ".sqlite3"]
    assert not any(TOKEN in text for text in written)
    assert "POST /v1/chat/completions" in server.log_text()  # it does log requests, without the key


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["no-such-run"], {}, "no-such-run"),
        ([RUN, "--api-key-env", "DRPO_TEST_UNSET_VARIABLE"], {}, "DRPO_TEST_UNSET_VARIABLE"),
        ([RUN, "--local-model", "smollm2-135m", "--base-url", "http://x/v1"], {}, "--local-model"),
        ([RUN, "--port", "70000"], {}, "--port"),
    ],
)
def test_bad_serve_arguments_are_one_line_and_exit_2(
    work: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    os.environ.pop("DRPO_TEST_UNSET_VARIABLE", None)
    done = drpo("serve", *args, cwd=work, env=env, timeout=120)
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_a_port_in_use_is_one_line(work: Path, server: Served) -> None:
    port = server.url.rsplit(":", 1)[1].removesuffix("/v1")
    done = drpo("serve", RUN, "--port", port, cwd=work, timeout=120)
    assert done.returncode == 2 and "cannot listen on 127.0.0.1" in done.stderr


LOADER_START = "# Load a drpo LangChain export"
ROOT = Path(__file__).resolve().parent.parent


def documented_loader() -> str:
    """The loader snippet of docs/deployment.md, as a reader would copy it."""
    text = (ROOT / "docs" / "deployment.md").read_text()
    start = text.index(LOADER_START)
    return text[start : text.index("```", start)]


def test_the_langchain_export_loads_without_drpo_and_builds_the_served_messages(
    work: Path, aligned: AlignedChatModel
) -> None:
    done = drpo("export", RUN, "--format", "langchain", "-o", "my-export", cwd=work)
    assert done.returncode == 0, done.stderr
    queries = [QUERY, "Is it safe to eat raw cookie dough?", "Write a limerick about a cat."]
    epilogue = (
        "\nimport sys\n"
        f"built = [[[m.type, m.content] for m in messages_for(q)] for q in {queries!r}]\n"
        "imported = any(name.split('.')[0] == 'drpo' for name in sys.modules)\n"
        "print('RESULT' + json.dumps({'built': built, 'drpo_imported': imported}))\n"
    )
    script = work / "load_export.py"
    script.write_text(documented_loader() + epilogue)
    ran = subprocess.run(
        [sys.executable, "-I", str(script)],
        cwd=work, env=cli_env(), capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout.split("RESULT", 1)[1])
    assert result["drpo_imported"] is False
    expected = []
    for query in queries:
        messages, _ = aligned.request_for(query)
        assert isinstance(messages, list)
        expected.append([[message.type, message.content] for message in messages])
    assert result["built"] == expected
    assert len(expected[0]) == 2 + 2 * aligned.k  # the prompt, K examples as two turns each, the query


def test_export_langchain_needs_a_directory(work: Path) -> None:
    done = drpo("export", RUN, "--format", "langchain", cwd=work)
    assert done.returncode == 2 and "-o DIR" in done.stderr
    (work / "a-file").write_text("x")
    done = drpo("export", RUN, "--format", "langchain", "-o", "a-file", cwd=work)
    assert done.returncode == 2 and "is a file" in done.stderr


def test_several_runs_are_several_models(work: Path, upstream: FakeOpenAIServer) -> None:
    config = work / "config.yaml"
    done = drpo("optimize", "--config", str(config), "--run-id", "second-run", "--seed", "3", cwd=work)
    assert done.returncode == 0, done.stderr
    twice = drpo("serve", RUN, RUN, cwd=work, timeout=120)
    assert twice.returncode == 2 and "named twice" in twice.stderr
    served = start_serve(work, RUN, "second-run", name="two")
    try:
        two = openai.OpenAI(base_url=served.url, api_key="unused", max_retries=0)
        assert sorted(model.id for model in two.models.list()) == sorted([RUN, "second-run"])
        for model in (RUN, "second-run"):
            before = len(upstream.requests)
            reply = two.chat.completions.create(model=model, messages=[{"role": "user", "content": QUERY}])
            assert reply.model == model and reply.choices[0].message.content
            system = upstream.requests[before]["body"]["messages"][0]
            result = json.loads((work / "drpo_runs" / model / "result.json").read_text())
            assert system == {"role": "system", "content": result["best_prompt"]}
    finally:
        stop(served)
