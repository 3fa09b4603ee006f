"""Runs that live beyond one machine: a real Chroma server, a real Postgres, resume from another directory."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from pathlib import Path

import chromadb
import pytest
from chromadb.config import Settings as ChromaSettings

from drpo.errors import DrpoInputError
from drpo.settings import settings_from_dict
from drpo.store.embeddings import Embedder
from support.cli import drpo, drpo_background, fake_server_config
from support.fake_openai import FakeOpenAIServer
from support.runs import comparable, roles, run
from support.scripted import ScriptedChatModel
from support.servers import chroma_server, free_port


@pytest.fixture(scope="module")
def chroma_url(tmp_path_factory: pytest.TempPathFactory):
    with chroma_server(tmp_path_factory.mktemp("chroma")) as url:
        yield url


def test_an_optimization_against_a_chroma_server_equals_the_embedded_store(
    make_settings, embedder: Embedder, chroma_url: str
) -> None:
    settings = make_settings(depth=3)
    embedded = run(settings, roles(ScriptedChatModel()), embedder, "embedded").result
    served = run(
        settings.model_copy(update={"chroma_url": chroma_url, "store_dir": settings.runs_dir / "other"}),
        roles(ScriptedChatModel()),
        embedder,
        "served",
    ).result
    assert comparable(served) == comparable(embedded)
    port = int(chroma_url.rsplit(":", 1)[1])
    client = chromadb.HttpClient(host="127.0.0.1", port=port, settings=ChromaSettings(anonymized_telemetry=False))
    collection = client.get_collection(served["serving"]["icl_collection"])
    assert collection.count() == 16  # our base ICL examples, written to the server


def test_unreachable_servers_are_one_clear_error(make_settings, embedder: Embedder) -> None:
    dead = f"127.0.0.1:{free_port()}"
    with pytest.raises(DrpoInputError, match=f"cannot reach the Chroma server at http://{dead}"):
        run(
            make_settings().model_copy(update={"chroma_url": f"http://{dead}"}),
            roles(ScriptedChatModel()),
            embedder,
            "c",
        )
    with pytest.raises(DrpoInputError, match=f"cannot connect to Postgres at {dead}"):
        run(make_settings(f"postgresql://postgres@{dead}/drpo"), roles(ScriptedChatModel()), embedder, "p")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("postgresql://user:secret@db/drpo", "not in the DSN"),
        ("mysql://db/drpo", "sqlite, memory or a postgresql"),
    ],
)
def test_bad_checkpointer_settings(value: str, message: str) -> None:
    with pytest.raises(DrpoInputError, match=message):
        settings_from_dict({"checkpointer": value})
    with pytest.raises(DrpoInputError, match="chroma_url"):
        settings_from_dict({"chroma_url": "chroma-host:8000"})


def test_cli_exits_2_for_an_unreachable_postgres(tmp_path: Path) -> None:
    dsn = f"postgresql://postgres@127.0.0.1:{free_port()}/drpo"
    done = drpo("optimize", "--local-model", "smollm2-135m", "--checkpointer", dsn, "--run-id", "x", cwd=tmp_path)
    assert done.returncode == 2 and "cannot connect to Postgres" in done.stderr
    resumed = drpo("resume", "x", "--checkpointer", dsn, cwd=tmp_path)
    assert resumed.returncode == 2 and "cannot connect to Postgres" in resumed.stderr


def test_a_run_killed_on_one_machine_is_resumed_on_another(tmp_path: Path, postgres_dsn: str, chroma_url: str) -> None:
    log = tmp_path / "requests.jsonl"
    machine_a, machine_b, reference_dir = tmp_path / "a", tmp_path / "b", tmp_path / "ref"
    for folder in (machine_a, machine_b, reference_dir):
        folder.mkdir()
    with FakeOpenAIServer(log_path=log, latency=0.05) as server:
        config = fake_server_config(tmp_path / "config.yaml", server.base_url, depth=3)
        reference = drpo("optimize", "--config", str(config), "--run-id", "x", "--runs-dir", "runs", cwd=reference_dir)
        assert reference.returncode == 0, reference.stderr
        reference_calls = len(log.read_text().splitlines())
        log.unlink()
        shared = ("--checkpointer", postgres_dsn, "--chroma-url", chroma_url)
        first = drpo_background(
            "optimize", "--config", str(config), "--run-id", "x", "--runs-dir", "runs", *shared, cwd=machine_a
        )
        deadline = time.time() + 120
        while time.time() < deadline and not (log.exists() and len(log.read_text().splitlines()) >= 12):
            time.sleep(0.05)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        killed_at = len(log.read_text().splitlines())
        assert 12 <= killed_at < reference_calls
        status = drpo("status", "x", "--runs-dir", "runs", "--checkpointer", postgres_dsn, cwd=machine_b)
        assert status.returncode == 0 and "interrupted" in status.stdout
        resumed = drpo("resume", "x", "--runs-dir", "runs", "--checkpointer", postgres_dsn, cwd=machine_b)
    assert resumed.returncode == 0, resumed.stderr
    expected = json.loads((reference_dir / "runs" / "x" / "result.json").read_text())
    result = json.loads((machine_b / "runs" / "x" / "result.json").read_text())
    assert result == expected
    calls = Counter(json.loads(line)["hash"] for line in log.read_text().splitlines())
    assert sum(calls.values()) - reference_calls <= 2  # only the calls in flight at the kill ran twice
    assert not (machine_a / "runs" / "x" / "result.json").exists()
    fetched = json.loads((machine_b / "runs" / "x" / "meta.json").read_text())
    assert fetched["fetched_from"].startswith("127.0.0.1:")
    for path in (machine_b / "runs" / "x").iterdir():
        assert "secret" not in path.read_bytes().decode("utf-8", "replace")
