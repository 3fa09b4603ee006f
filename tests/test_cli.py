"""The CLI as a user runs it: real subprocesses, real HTTP to a local fake OpenAI-compatible server."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from support.cli import drpo, drpo_background, fake_server_config
from support.fake_openai import FakeOpenAIServer


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Counter[str], Path]:
    """One unbroken CLI run: its result and the server's request log."""
    work = tmp_path_factory.mktemp("reference")
    log = work / "requests.jsonl"
    with FakeOpenAIServer(log_path=log) as server:
        config = fake_server_config(work / "config.yaml", server.base_url)
        done = drpo("optimize", "--config", str(config), "--run-id", "ref", "--runs-dir", "runs", cwd=work)
    assert done.returncode == 0, done.stderr
    result = json.loads((work / "runs" / "ref" / "result.json").read_text())
    hashes = Counter(json.loads(line)["hash"] for line in log.read_text().splitlines())
    return result, hashes, work


def without_run_id(result: dict) -> dict:
    return {key: value for key, value in result.items() if key != "run_id"}


def test_optimize_prints_progress_and_the_best_prompt(reference_run) -> None:
    result, hashes, work = reference_run
    assert result["best_prompt"] and result["depths_run"] >= 4
    entries = [json.loads(line) for line in (work / "requests.jsonl").read_text().splitlines()]
    probes = [entry for entry in entries if entry["task"] == "probe"]
    assert len(probes) == 1  # whether the server honours n: asked once, then remembered
    assert len(entries) - len(probes) == sum(u["calls"] for u in result["usage"].values())


def test_kill_9_then_resume_reaches_the_unbroken_result(reference_run, tmp_path: Path) -> None:
    reference, reference_hashes, _ = reference_run
    log = tmp_path / "requests.jsonl"
    with FakeOpenAIServer(log_path=log, latency=0.05) as server:
        config = fake_server_config(tmp_path / "config.yaml", server.base_url)
        args = ("--config", str(config), "--run-id", "killed", "--runs-dir", "runs")
        process = drpo_background("optimize", *args, cwd=tmp_path)
        deadline = time.time() + 120
        while time.time() < deadline:
            if log.exists() and len(log.read_text().splitlines()) >= 25:
                break
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        before = len(log.read_text().splitlines())
        assert 25 <= before < sum(reference_hashes.values())
        partial = drpo("show", "killed", "--runs-dir", "runs", cwd=tmp_path)
        assert partial.returncode == 0 and "no result yet" in partial.stdout
        resumed = drpo("resume", "killed", "--runs-dir", "runs", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads((tmp_path / "runs" / "killed" / "result.json").read_text())
    assert without_run_id(result) == without_run_id(reference)
    hashes = Counter(json.loads(line)["hash"] for line in log.read_text().splitlines())
    repeated = hashes - reference_hashes
    assert sum(repeated.values()) <= 2  # at most the calls in flight at the kill (concurrency 2)
    assert not reference_hashes - hashes


def test_kill_9_during_validation_then_resume_reaches_the_unbroken_result(tmp_path: Path) -> None:
    search = {"depth": 3, "beam_width": 1, "num_actions": 2, "validation": 2, "max_depth_increase": 0}
    unbroken, killed = tmp_path / "unbroken", tmp_path / "killed"
    unbroken.mkdir()
    killed.mkdir()
    reference_log = unbroken / "requests.jsonl"
    with FakeOpenAIServer(log_path=reference_log) as server:
        config = fake_server_config(unbroken / "config.yaml", server.base_url, **search)
        done = drpo("optimize", "--config", str(config), "--run-id", "v", "--runs-dir", "runs", cwd=unbroken)
    assert done.returncode == 0, done.stderr
    reference = json.loads((unbroken / "runs" / "v" / "result.json").read_text())
    validation = [query["text"] for query in reference["validation"]["queries"]]
    entries = [json.loads(line) for line in reference_log.read_text().splitlines()]
    answered = [i for i, e in enumerate(entries) if e["task"] == "answer" and any(q in e["tail"] for q in validation)]
    later = answered[len(answered) // 2]  # a validation answer of a later depth: its depth is half validated
    log = killed / "requests.jsonl"
    with FakeOpenAIServer(log_path=log, latency=0.05) as server:
        config = fake_server_config(killed / "config.yaml", server.base_url, **search)
        process = drpo_background(
            "optimize", "--config", str(config), "--run-id", "v", "--runs-dir", "runs", cwd=killed
        )
        deadline = time.time() + 300
        while time.time() < deadline and not (log.exists() and len(log.read_text().splitlines()) > later):
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
        assert len(log.read_text().splitlines()) > later, "the run never reached its validation step"
        process.wait(timeout=30)
        assert not (killed / "runs" / "v" / "result.json").exists()
        resumed = drpo("resume", "v", "--runs-dir", "runs", cwd=killed)
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads((killed / "runs" / "v" / "result.json").read_text())
    assert without_run_id(result) == without_run_id(reference)
    assert result["validation"]["queries"] == reference["validation"]["queries"]


@pytest.fixture
def sigint_not_ignored():
    """A shell that starts the tests in the background ignores SIGINT, and children inherit that; Python
    then installs no KeyboardInterrupt handler. Ctrl-C is what this test is about, so it restores the default."""
    previous = signal.getsignal(signal.SIGINT)
    if previous == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_leaves_a_resumable_run(reference_run, tmp_path: Path, sigint_not_ignored) -> None:
    reference, _, _ = reference_run
    log = tmp_path / "requests.jsonl"
    with FakeOpenAIServer(log_path=log, latency=0.05) as server:
        config = fake_server_config(tmp_path / "config.yaml", server.base_url)
        process = drpo_background(
            "optimize", "--config", str(config), "--run-id", "cc", "--runs-dir", "runs", cwd=tmp_path
        )
        deadline = time.time() + 120
        while time.time() < deadline and not (log.exists() and len(log.read_text().splitlines()) >= 10):
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 130
        assert "drpo resume cc" in stderr
        assert json.loads((tmp_path / "runs" / "cc" / "status.json").read_text())["status"] == "interrupted"
        resumed = drpo("resume", "cc", "--runs-dir", "runs", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads((tmp_path / "runs" / "cc" / "result.json").read_text())
    assert without_run_id(result) == without_run_id(reference)


def test_runs_show_and_export(reference_run) -> None:
    result, _, work = reference_run
    listed = drpo("runs", "--runs-dir", "runs", cwd=work)
    assert listed.returncode == 0 and "ref" in listed.stdout and "done" in listed.stdout
    shown = drpo("show", "ref", "--runs-dir", "runs", cwd=work)
    assert shown.returncode == 0 and result["best"]["candidate_id"] in shown.stdout
    assert result["best_prompt"].splitlines()[0] in shown.stdout
    as_text = drpo("export", "ref", "--format", "txt", "--runs-dir", "runs", cwd=work)
    assert as_text.stdout == result["best_prompt"] + "\n"
    as_json = drpo("export", "ref", "--runs-dir", "runs", "-o", "out.json", cwd=work)
    assert as_json.returncode == 0 and json.loads((work / "out.json").read_text()) == result


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("optimize", "--config", "missing.yaml"), "config file not found"),
        (("optimize", "--seed-file", "nope.txt", "--depth", "1"), "seed file not found"),
        (("optimize", "--beam-width", "0"), "search.beam_width"),
        (("optimize", "--local-model", "gpt-17"), "unknown local model"),
        (("resume", "nosuchrun"), "unknown run"),
        (("show", "nosuchrun"), "unknown run"),
        (("export", "ref", "--format", "xml"), "unknown export format"),
    ],
)
def test_bad_input_exits_2_with_one_line(reference_run, args: tuple[str, ...], message: str) -> None:
    _, _, work = reference_run
    done = (
        drpo(*args, "--runs-dir", "runs", cwd=work)
        if args[0] != "optimize"
        else drpo(*args, "--runs-dir", "bad-runs", cwd=work)
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_empty_seed_file_and_unknown_provider(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("\n")
    done = drpo("optimize", "--seed-file", "empty.txt", cwd=tmp_path)
    assert done.returncode == 2 and "holds no queries" in done.stderr
    (tmp_path / "c.yaml").write_text("roles:\n  evaluator:\n    provider: bard\n")
    done = drpo("optimize", "--config", "c.yaml", cwd=tmp_path)
    assert done.returncode == 2 and "roles.evaluator.provider" in done.stderr


def test_api_keys_never_reach_run_artifacts(tmp_path: Path) -> None:
    secret = "sk-test-" + os.urandom(8).hex()
    with FakeOpenAIServer(required_key=secret) as server:
        config = fake_server_config(tmp_path / "config.yaml", server.base_url, depth=2)
        text = config.read_text().replace("max_retries: 0", "max_retries: 0\n    api_key_env: DRPO_TEST_KEY")
        config.write_text(text)
        env_done = drpo_with_env(tmp_path, secret, config)
    assert env_done.returncode == 0, env_done.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert secret not in env_done.stdout + env_done.stderr


def drpo_with_env(cwd: Path, secret: str, config: Path):
    import subprocess

    from support.cli import DRPO, cli_env

    env = cli_env()
    env["DRPO_TEST_KEY"] = secret
    return subprocess.run(
        [*DRPO, "optimize", "--config", str(config), "--runs-dir", "runs"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_wrong_api_key_is_one_clear_line(tmp_path: Path) -> None:
    with FakeOpenAIServer(required_key="right") as server:
        config = fake_server_config(tmp_path / "config.yaml", server.base_url, depth=2)
        done = drpo("optimize", "--config", str(config), "--runs-dir", "runs", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    # generation and aspect selection start together, so either role may meet the bad key first
    assert re.search(r"role (base|aspect_selector) \(openai_compatible:fake at http", done.stderr), done.stderr
    assert "authentication failed (401)" in done.stderr


def test_completion_base_model_over_http(tmp_path: Path) -> None:
    log = tmp_path / "requests.jsonl"
    with FakeOpenAIServer(log_path=log) as server:
        config = fake_server_config(tmp_path / "config.yaml", server.base_url, depth=2)
        config.write_text(config.read_text().replace("max_tokens: 256", "max_tokens: 256\n    mode: completion"))
        done = drpo("optimize", "--config", str(config), "--run-id", "comp", "--runs-dir", "runs", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    kinds = Counter(json.loads(line)["kind"] for line in log.read_text().splitlines())
    result = json.loads((tmp_path / "runs" / "comp" / "result.json").read_text())
    assert kinds["completion"] == result["usage"]["base"]["calls"] > 0
    answers = [json.loads(line)["answer"] for line in (tmp_path / "runs" / "comp" / "answers.jsonl").open()]
    assert answers and all(a.startswith("Answer ") and "<END>" not in a and "extra" not in a for a in answers)


def test_optimizer_samples_come_from_one_request_with_n(tmp_path: Path) -> None:
    log = tmp_path / "requests.jsonl"
    with FakeOpenAIServer(log_path=log) as server:
        config = fake_server_config(tmp_path / "config.yaml", server.base_url, depth=3)
        config.write_text(config.read_text().replace("temperature: 0.7", "temperature: 0.7\n    sample_with_n: true"))
        done = drpo("optimize", "--config", str(config), "--run-id", "withn", "--runs-dir", "runs", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    with_n = [entry for entry in entries if entry["n"] == 3]
    result = json.loads((tmp_path / "runs" / "withn" / "result.json").read_text())
    assert len(with_n) == result["usage"]["optimizer"]["calls"] >= 1
    proposed = [c for d in result["depths"][1:] for c in d["candidates"] if c["origin"] == "optimizer"]
    assert len(proposed) == 3 * len(with_n)
    assert len({c["prompt"] for c in proposed}) == len(proposed)  # n samples are distinct, not one reply copied


def test_icl_optimize_list_show_and_use(tmp_path: Path) -> None:
    with FakeOpenAIServer() as server:
        config = fake_server_config(tmp_path / "config.yaml", server.base_url, depth=2)
        done = drpo(
            "icl",
            "optimize",
            "--config",
            str(config),
            "--run-id",
            "icl1",
            "--depth",
            "2",
            "--runs-dir",
            "runs",
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr
        assert "drpo-icl-icl1" in done.stdout and "round 2" in done.stdout
        used = drpo(
            "optimize",
            "--config",
            str(config),
            "--icl-collection",
            "icl1",
            "--run-id",
            "p1",
            "--runs-dir",
            "runs",
            cwd=tmp_path,
        )
        assert used.returncode == 0, used.stderr
    every = drpo("runs", "--runs-dir", "runs", cwd=tmp_path)
    assert every.returncode == 0 and "icl1" in every.stdout and "p1" in every.stdout
    listed = drpo("icl", "list", "--runs-dir", "runs", cwd=tmp_path)
    assert "icl1" in listed.stdout and "drpo-icl-icl1" in listed.stdout and "p1" not in listed.stdout
    shown = drpo("icl", "show", "drpo-icl-icl1", "--full", "--runs-dir", "runs", cwd=tmp_path)
    assert shown.returncode == 0 and "How does the heart pump blood" in shown.stdout
    result = json.loads((tmp_path / "runs" / "p1" / "result.json").read_text())
    assert result["serving"]["icl_collection"] == "drpo-icl-icl1"
    for args, message in [
        (("icl", "show", "p1"), "is not an ICL run"),
        (("icl", "show", "nothing"), "unknown run"),
        (("optimize", "--icl-collection", "nothing", "--depth", "1"), "not found"),
        (("import-reference", "no/such/dir"), "reference directory not found"),
        (("chat", "nosuchrun"), "unknown run"),
        (("show", "icl1"), "is an ICL optimization"),
        (("export", "icl1", "--format", "txt"), "drpo export --format json"),
    ]:
        bad = drpo(*args, "--runs-dir", "runs", cwd=tmp_path)
        assert bad.returncode == 2 and message in bad.stderr, (args, bad.stderr)


def test_icl_optimize_survives_kill_9(tmp_path: Path) -> None:
    reference_dir, broken_dir = tmp_path / "ref", tmp_path / "broken"
    reference_dir.mkdir()
    broken_dir.mkdir()
    with FakeOpenAIServer() as server:
        config = fake_server_config(reference_dir / "config.yaml", server.base_url)
        args = ("icl", "optimize", "--config", str(config), "--depth", "2", "--num-actions", "2", "--runs-dir", "runs")
        assert drpo(*args, "--run-id", "ref", cwd=reference_dir).returncode == 0
    log = broken_dir / "requests.jsonl"
    with FakeOpenAIServer(log_path=log, latency=0.05) as server:
        config = fake_server_config(broken_dir / "config.yaml", server.base_url)
        args = ("icl", "optimize", "--config", str(config), "--depth", "2", "--num-actions", "2", "--runs-dir", "runs")
        process = drpo_background(*args, "--run-id", "ref", cwd=broken_dir)
        deadline = time.time() + 120
        while time.time() < deadline and not (log.exists() and len(log.read_text().splitlines()) >= 40):
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        resumed = drpo("resume", "ref", "--runs-dir", "runs", cwd=broken_dir)
    assert resumed.returncode == 0, resumed.stderr
    expected = json.loads((reference_dir / "runs" / "ref" / "result.json").read_text())
    got = json.loads((broken_dir / "runs" / "ref" / "result.json").read_text())
    assert got == expected


def test_budget_stops_cleanly_and_a_larger_budget_finishes_the_run(reference_run, tmp_path: Path) -> None:
    reference, reference_hashes, _ = reference_run
    log = tmp_path / "requests.jsonl"
    with FakeOpenAIServer(log_path=log) as server:
        config = fake_server_config(tmp_path / "config.yaml", server.base_url)
        args = ("--config", str(config), "--run-id", "budget", "--runs-dir", "runs", "--max-tokens", "15000")
        stopped = drpo("optimize", *args, cwd=tmp_path)
        assert stopped.returncode == 3, stopped.stderr
        assert "token budget used up" in stopped.stderr and "drpo resume budget" in stopped.stderr
        status = json.loads((tmp_path / "runs" / "budget" / "status.json").read_text())
        assert status["status"] == "budget-exhausted"
        calls_before = len(log.read_text().splitlines())
        assert 0 < calls_before < sum(reference_hashes.values())
        again = drpo("resume", "budget", "--runs-dir", "runs", cwd=tmp_path)
        assert again.returncode == 3  # the budget is still used up: nothing new is called
        assert len(log.read_text().splitlines()) == calls_before
        finished = drpo("resume", "budget", "--runs-dir", "runs", "--max-tokens", "10000000", cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr
    result = json.loads((tmp_path / "runs" / "budget" / "result.json").read_text())
    assert without_run_id(result) == without_run_id(reference)
    hashes = Counter(json.loads(line)["hash"] for line in log.read_text().splitlines())
    assert sum((hashes - reference_hashes).values()) == 0  # no call was made twice


def test_dry_run_plans_the_papers_calls_and_calls_nothing(tmp_path: Path) -> None:
    paper = Path(__file__).resolve().parent.parent / "examples" / "paper.yaml"
    done = drpo("optimize", "--config", str(paper), "--dry-run", "--runs-dir", "runs", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = {line.split("│")[1].strip(): line for line in done.stdout.splitlines() if line.count("│") > 5}
    assert "│ 112 " in rows["base"] and "│ 112 " in rows["evaluator"] and "│ 111 " in rows["optimizer"]
    assert not (tmp_path / "runs").exists()
