"""Review, status, history, edit and fork from the command line (no TTY), against the fake HTTP server."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from support.cli import drpo, drpo_background, fake_server_config
from support.fake_openai import FakeOpenAIServer


@pytest.fixture(scope="module")
def server():
    with FakeOpenAIServer() as running:
        yield running


def prompt_file(folder: Path, text: str) -> Path:
    path = folder / f"prompt-{abs(hash(text))}.txt"
    path.write_text(text)
    return path


def status_line(run_id: str, cwd: Path) -> str:
    done = drpo("status", run_id, "--runs-dir", "runs", cwd=cwd)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_review_cycle_from_the_cli(server, tmp_path: Path) -> None:
    config = fake_server_config(tmp_path / "config.yaml", server.base_url, depth=3, max_depth_increase=0)
    started = drpo("optimize", "--config", str(config), "--run-id", "r", "--runs-dir", "runs", "--review", cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    assert "waits for review at depth 1" in started.stdout and "drpo review r --accept" in started.stdout
    assert status_line("r", tmp_path) == "run r: waiting-for-review  depth 1"

    shown = drpo("review", "r", "--runs-dir", "runs", "--full", cwd=tmp_path)
    assert shown.returncode == 0 and "d1-0-0" in shown.stdout and "answer with: drpo review r" in shown.stdout

    before = (tmp_path / "runs" / "r" / "status.json").read_text()
    for args, message in [
        (("--drop", "5"), "out of range"),
        (("--edit", "0"), "--edit and --add need --prompt-file"),
        (("--edit", "0", "--prompt-file", str(prompt_file(tmp_path, "  \n"))), "is empty"),
        (("--add", "--prompt-file", str(tmp_path / "missing.txt")), "prompt file not found"),
    ]:
        refused = drpo("review", "r", "--runs-dir", "runs", *args, cwd=tmp_path)
        assert refused.returncode == 2 and message in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert (tmp_path / "runs" / "r" / "status.json").read_text() == before

    human = "You are a reviewer-written assistant. Be exact and kind."
    edited = drpo(
        "review",
        "r",
        "--runs-dir",
        "runs",
        "--edit",
        "0",
        "--prompt-file",
        str(prompt_file(tmp_path, human)),
        cwd=tmp_path,
    )
    assert edited.returncode == 0, edited.stderr
    assert "waits for review at depth 2" in edited.stdout and "depth   2" in edited.stdout

    history = drpo("history", "r", "--runs-dir", "runs", cwd=tmp_path)
    assert history.returncode == 0 and "edit" in history.stdout

    forked = drpo(
        "fork",
        "r",
        "--from-depth",
        "1",
        "--run-id",
        "f",
        "--no-review",
        "--add",
        "--prompt-file",
        str(prompt_file(tmp_path, "Forked prompt.")),
        "--runs-dir",
        "runs",
        cwd=tmp_path,
    )
    assert forked.returncode == 0, forked.stderr
    fork_result = json.loads((tmp_path / "runs" / "f" / "result.json").read_text())
    assert "Forked prompt." in [c["prompt"] for c in fork_result["depths"][1]["candidates"]]
    assert not (tmp_path / "runs" / "r" / "result.json").exists()  # the source is untouched

    stopped = drpo("review", "r", "--runs-dir", "runs", "--stop", cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    result = json.loads((tmp_path / "runs" / "r" / "result.json").read_text())
    assert result["stop_reason"] == "stopped by reviewer"
    assert human in [c["prompt"] for c in result["depths"][1]["candidates"] if c["origin"] == "human"]
    assert status_line("r", tmp_path).startswith("run r: done")
    again = drpo("review", "r", "--runs-dir", "runs", "--accept", cwd=tmp_path)
    assert again.returncode == 2 and "not waiting for a review" in again.stderr


def test_unknown_runs_and_bad_fork_depths_exit_2(server, tmp_path: Path) -> None:
    for command in (
        ("status", "ghost"),
        ("history", "ghost"),
        ("review", "ghost"),
        ("fork", "ghost", "--from-depth", "1"),
    ):
        done = drpo(*command, "--runs-dir", "runs", cwd=tmp_path)
        assert done.returncode == 2 and "unknown run 'ghost'" in done.stderr


def test_a_killed_run_reads_interrupted_and_a_second_driver_is_refused(tmp_path: Path) -> None:
    log = tmp_path / "requests.jsonl"
    with FakeOpenAIServer(log_path=log, latency=0.2) as slow:
        config = fake_server_config(tmp_path / "config.yaml", slow.base_url, depth=6)
        first = drpo_background(
            "optimize", "--config", str(config), "--run-id", "k", "--runs-dir", "runs", cwd=tmp_path
        )
        deadline = time.time() + 60
        while time.time() < deadline and not (log.exists() and len(log.read_text().splitlines()) >= 3):
            time.sleep(0.05)
        assert status_line("k", tmp_path).startswith("run k: running")
        second = drpo("resume", "k", "--runs-dir", "runs", cwd=tmp_path)
        assert second.returncode == 2 and "being driven by another process" in second.stderr
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        assert status_line("k", tmp_path).startswith("run k: interrupted")


def test_with_a_terminal_optimize_asks_at_each_depth_inline(server, tmp_path: Path) -> None:
    import pty
    import select
    import subprocess

    from support.cli import DRPO, cli_env

    config = fake_server_config(tmp_path / "config.yaml", server.base_url, depth=3, max_depth_increase=0)
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [*DRPO, "optimize", "--config", str(config), "--run-id", "tty", "--runs-dir", "runs", "--review"],
        cwd=tmp_path,
        env={**cli_env(), "COLUMNS": "200", "TERM": "dumb"},
        stdin=slave,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    answers = iter(["drop 9", "add\nTyped at the terminal.\n", "accept"])
    seen = ""
    deadline = time.time() + 180
    while process.poll() is None and time.time() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if not ready:
            continue
        try:
            chunk = os.read(master, 4096).decode("utf-8", "replace")
        except OSError:
            break
        seen += chunk
        if seen.rstrip().endswith("show [I] >"):
            seen += "\n"  # answered: wait for the next prompt
            os.write(master, (next(answers) + "\n").encode())
    process.wait(timeout=60)
    os.close(master)
    assert process.returncode == 0, seen[-2000:]
    assert "out of range" in seen  # the invalid answer was shown back and asked again
    result = json.loads((tmp_path / "runs" / "tty" / "result.json").read_text())
    assert "Typed at the terminal." in [c["prompt"] for c in result["depths"][1]["candidates"]]
    assert [entry["decisions"][0]["action"] for _, entry in sorted(result["reviews"].items())] == ["add", "accept"]


def test_a_sequential_run_with_progress_events_finishes(server, tmp_path: Path) -> None:
    """concurrency 1 (the reference's sequential mode) with the custom stream on: no deadlock."""
    config = fake_server_config(tmp_path / "config.yaml", server.base_url, depth=2, concurrency=1)
    done = drpo("optimize", "--config", str(config), "--run-id", "seq", "--runs-dir", "runs", cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "depth   2" in done.stdout and (tmp_path / "runs" / "seq" / "result.json").is_file()
