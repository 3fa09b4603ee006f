"""Fault harness: a flaky provider (20% injected faults of every kind) changes nothing but the retry count."""

from __future__ import annotations

import copy
import json
import re
import time
from pathlib import Path
from typing import Any

from support.cli import drpo, fake_server_config
from support.fake_openai import CONTENT_FAULTS, FakeOpenAIServer


def flaky_config(path: Path, base_url: str, **search: Any) -> Path:
    config = fake_server_config(path, base_url, **search)
    text = config.read_text().replace(
        "max_retries: 0", "max_retries: 6\n    retry_base_delay: 0.02\n    retry_max_delay: 0.2\n    timeout: 1.0"
    )
    # one request per optimizer sample: enough requests for every fault kind to occur (the n probe, itself
    # retried like any call, is covered by test_n_support)
    text = text.replace("temperature: 0.7", "temperature: 0.7\n    sample_with_n: false")
    config.write_text(text)
    return config


def search_outcome(result: dict) -> dict:
    """The search's result without per-attempt bookkeeping (usage and judge attempts grow with re-asks)."""
    dropped = {"usage", "usage_by_depth", "cost"}
    clean = copy.deepcopy({key: value for key, value in result.items() if key not in dropped})
    for depth in clean["depths"]:
        for candidate in depth["candidates"]:
            for verdict in candidate["evaluations"]:
                verdict.pop("judge_attempts", None)
    return clean


def test_twenty_percent_faults_of_every_kind_leave_the_result_unchanged(tmp_path: Path) -> None:
    clean_dir, flaky_dir = tmp_path / "clean", tmp_path / "flaky"
    clean_dir.mkdir()
    flaky_dir.mkdir()
    with FakeOpenAIServer() as server:
        config = flaky_config(clean_dir / "config.yaml", server.base_url, depth=4)
        done = drpo("optimize", "--config", str(config), "--run-id", "r", "--runs-dir", "runs", cwd=clean_dir)
    assert done.returncode == 0, done.stderr
    log = flaky_dir / "requests.jsonl"
    with FakeOpenAIServer(log_path=log, fault_rate=0.2, timeout_sleep=1.3) as server:
        config = flaky_config(flaky_dir / "config.yaml", server.base_url, depth=4)
        flaky = drpo("optimize", "--config", str(config), "--run-id", "r", "--runs-dir", "runs", cwd=flaky_dir)
    assert flaky.returncode == 0, flaky.stderr
    expected = json.loads((clean_dir / "runs" / "r" / "result.json").read_text())
    got = json.loads((flaky_dir / "runs" / "r" / "result.json").read_text())
    assert search_outcome(got) == search_outcome(expected)
    faults = [json.loads(line)["fault"] for line in log.read_text().splitlines() if '"fault"' in line]
    transport = [fault for fault in faults if fault not in CONTENT_FAULTS]
    assert len(set(faults)) >= 7, faults  # most kinds occurred
    retries = json.loads((flaky_dir / "runs" / "r" / "status.json").read_text())["transport_retries"]
    assert sum(retries.values()) == len(transport)  # every transport fault was retried exactly once, and counted
    content = [fault for fault in faults if fault in {"truncated", "empty"}]
    calls = lambda result: sum(usage["calls"] for usage in result["usage"].values())  # noqa: E731
    assert calls(got) - calls(expected) == len(content)  # each unusable reply cost exactly one re-ask
    assert got["failures"] == expected["failures"] == []


def test_errors_that_cannot_heal_fail_fast_with_one_line(tmp_path: Path) -> None:
    with FakeOpenAIServer(known_models={"real-model"}) as server:
        config = flaky_config(tmp_path / "config.yaml", server.base_url, depth=2)
        started = time.monotonic()
        done = drpo("optimize", "--config", str(config), "--runs-dir", "runs", cwd=tmp_path)
        elapsed = time.monotonic() - started
    assert done.returncode == 2 and elapsed < 60
    assert "model or endpoint not found (404)" in done.stderr and "openai_compatible" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    unreachable = flaky_config(tmp_path / "gone.yaml", "http://127.0.0.1:9/v1", depth=2)
    done = drpo("optimize", "--config", str(unreachable), "--runs-dir", "runs", cwd=tmp_path)
    assert done.returncode == 2 and "cannot reach the server" in done.stderr, done.stderr
    # aspect selection and generation start together; whichever fails first is named
    assert re.search(r"role (aspect_selector|base) \(openai_compatible", done.stderr)
    assert len(done.stderr.strip().splitlines()) == 1


def test_ten_kills_at_random_moments_then_resume_reach_the_unbroken_result(tmp_path: Path) -> None:
    """kill -9 at 10 random moments of one run, each followed by ``drpo resume``."""
    import os
    import random
    import signal
    from collections import Counter

    from support.cli import drpo_background

    reference_dir, killed_dir = tmp_path / "reference", tmp_path / "killed"
    reference_dir.mkdir()
    killed_dir.mkdir()
    reference_log, log = reference_dir / "requests.jsonl", killed_dir / "requests.jsonl"
    with FakeOpenAIServer(log_path=reference_log) as server:
        config = fake_server_config(reference_dir / "config.yaml", server.base_url, depth=5, max_depth_increase=0)
        done = drpo("optimize", "--config", str(config), "--run-id", "r", "--runs-dir", "runs", cwd=reference_dir)
    assert done.returncode == 0, done.stderr
    reference_hashes = Counter(json.loads(line)["hash"] for line in reference_log.read_text().splitlines())
    total = sum(reference_hashes.values())
    rng = random.Random(20261123)
    moments = sorted(rng.sample(range(4, total - 4, 3), 10))  # request counts at which to kill, spread over the run
    lines = lambda: len(log.read_text().splitlines()) if log.exists() else 0  # noqa: E731
    with FakeOpenAIServer(log_path=log, latency=0.03) as server:
        config = fake_server_config(killed_dir / "config.yaml", server.base_url, depth=5, max_depth_increase=0)
        command = ("optimize", "--config", str(config), "--run-id", "r", "--runs-dir", "runs")
        for moment in moments:
            process = drpo_background(*command, cwd=killed_dir)
            deadline = time.time() + 120
            while process.poll() is None and lines() < moment and time.time() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0, 0.05))  # anywhere inside a call, not only right after one finished
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
            command = ("resume", "r", "--runs-dir", "runs")
        finished = drpo(*command, cwd=killed_dir)
    assert finished.returncode == 0, finished.stderr
    expected = json.loads((reference_dir / "runs" / "r" / "result.json").read_text())
    got = json.loads((killed_dir / "runs" / "r" / "result.json").read_text())
    assert got == expected
    hashes = Counter(json.loads(line)["hash"] for line in log.read_text().splitlines())
    assert not reference_hashes - hashes  # every call of the unbroken run was made
    repeated = sum((hashes - reference_hashes).values())
    assert repeated <= 2 * len(moments)  # at most the calls in flight (concurrency 2) at each kill
    print(f"10 kills: {sum(hashes.values())} requests for {total} unbroken, {repeated} repeated")
