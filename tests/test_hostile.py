"""Issue 10's hostile cases, each doing the damage for real: damaged run files and databases, read-only and
full disks, non-UTF-8 inputs, echoed keys, judges and optimizers that never answer usably, providers that keep
failing, bad model files and unreachable databases."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest
import yaml

from drpo.errors import DrpoInputError
from drpo.settings import settings_from_dict
from drpo.store.files import read_user_text
from drpo.store.redaction import redact, register_secret
from support.cli import drpo, fake_server_config
from support.fake_openai import FakeOpenAIServer

NOT_UTF8 = b"caf\xe9 \xff\xfe broken"


@pytest.fixture(scope="module")
def finished_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two finished runs, made once; each test damages its own copy."""
    work = tmp_path_factory.mktemp("finished")
    with FakeOpenAIServer() as server:
        config = fake_server_config(work / "c.yaml", server.base_url, depth=2)
        for run_id in ("good", "hurt"):
            done = drpo("optimize", "--config", str(config), "--run-id", run_id, "--runs-dir", "runs", cwd=work)
            assert done.returncode == 0, done.stderr
    return work / "runs"


DAMAGES = {
    "empty": "",
    "not-json": "<html>oops",
    "empty-object": "{}",
    "wrong-types": '{"status": 5, "kind": 7}',
    "a-list": "[1, 2]",
}


FILE_DAMAGES = [
    (name, damage)
    for name in ("status.json", "meta.json", "result.json")
    for damage in ("empty", "truncated", "not-json", "a-list")
] + [("status.json", "empty-object"), ("status.json", "wrong-types")]  # fields checked where they are read as a record


@pytest.mark.parametrize(("name", "damage"), FILE_DAMAGES)
def test_a_damaged_run_file_never_breaks_other_commands(
    finished_runs: Path, tmp_path: Path, name: str, damage: str
) -> None:
    shutil.copytree(finished_runs, tmp_path / "runs")
    target = tmp_path / "runs" / "hurt" / name
    original = target.read_text()
    target.write_text(DAMAGES.get(damage, original[: len(original) // 2]))
    listed = drpo("runs", "--runs-dir", "runs", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "good" in listed.stdout and f"unreadable: {name}" in listed.stdout
    for command in ("show", "status"):
        done = drpo(command, "hurt", "--runs-dir", "runs", cwd=tmp_path)
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        assert "damaged run file" in done.stderr and name in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    good_status = json.loads((tmp_path / "runs" / "good" / "status.json").read_text())
    assert good_status["status"] == "done"  # read-only commands relabel nothing


def test_every_user_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(NOT_UTF8)
    with pytest.raises(DrpoInputError, match=r"prompt file .*bad.txt is not UTF-8 text"):
        read_user_text(bad, "prompt file")
    with FakeOpenAIServer() as server:
        config = fake_server_config(tmp_path / "c.yaml", server.base_url, depth=2)
        cases = [
            ("optimize", "--config", str(config), "--seed-file", str(bad), "--runs-dir", "runs"),
            ("icl", "optimize", "--config", str(config), "--examples", str(bad), "--runs-dir", "runs"),
            ("optimize", "--config", str(bad), "--runs-dir", "runs"),
            ("eval", "run", "--config", str(config), "--queries", str(bad), "--system", "base", "--runs-dir", "runs"),
        ]
        for args in cases:
            done = drpo(*args, cwd=tmp_path)
            assert done.returncode == 2, (args, done.stderr)
            assert "is not UTF-8 text" in done.stderr and "bad.txt" in done.stderr, (args, done.stderr)
            assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # no half-created run


def test_a_runs_dir_that_is_a_file_is_one_line_without_a_resume_hint(tmp_path: Path) -> None:
    (tmp_path / "runs").write_text("not a directory")
    with FakeOpenAIServer() as server:
        config = fake_server_config(tmp_path / "c.yaml", server.base_url, depth=2)
        done = drpo("optimize", "--config", str(config), "--run-id", "x", "--runs-dir", "runs", cwd=tmp_path)
    assert done.returncode == 2 and "is a file, not a directory" in done.stderr
    assert "resume" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    listed = drpo("runs", "--runs-dir", "runs", cwd=tmp_path)
    assert listed.returncode == 2 and "is a file" in listed.stderr


def test_a_server_that_echoes_the_key_never_gets_it_written(tmp_path: Path) -> None:
    secret = "sk-proj-" + os.urandom(12).hex()
    with FakeOpenAIServer(required_key="the-right-one", echo_authorization=True) as server:
        config = fake_server_config(tmp_path / "c.yaml", server.base_url, depth=2)
        data = yaml.safe_load(config.read_text())
        for role in data["roles"].values():
            role["api_key_env"] = "DRPO_ECHO_KEY"
        config.write_text(yaml.safe_dump(data))
        env = {"DRPO_ECHO_KEY": secret}
        done = drpo(
            "optimize", "--config", str(config), "--run-id", "echo", "--runs-dir", "runs", cwd=tmp_path, env=env
        )
    assert done.returncode == 2, done.stderr
    assert "authentication failed (401)" in done.stderr and "[redacted]" in done.stderr
    assert secret not in done.stdout + done.stderr
    for path in (tmp_path / "runs").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_a_provider_whose_answers_echo_the_key_never_gets_it_written(tmp_path: Path) -> None:
    secret = "plain" + os.urandom(12).hex()  # not key-shaped: only knowing the configured key finds it
    with FakeOpenAIServer(required_key=secret, echo_key_in_answers=True) as server:
        config = fake_server_config(tmp_path / "c.yaml", server.base_url, depth=2)
        data = yaml.safe_load(config.read_text())
        for role in data["roles"].values():
            role["api_key_env"] = "DRPO_ECHO_KEY"
        config.write_text(yaml.safe_dump(data))
        done = drpo("optimize", "--config", str(config), "--run-id", "echo", "--runs-dir", "runs", cwd=tmp_path,
                    env={"DRPO_ECHO_KEY": secret})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert secret not in done.stdout + done.stderr
    written = [path for path in (tmp_path / "runs").rglob("*") if path.is_file()]
    assert any(b"[redacted]" in path.read_bytes() for path in written)  # the echo was there, and replaced
    for path in written:
        assert secret.encode() not in path.read_bytes(), path


def test_redaction_of_known_values_and_key_shapes() -> None:
    register_secret("my-own-token-123")
    text = "auth my-own-token-123 then Bearer abcdefgh12345678 and gsk_ABCDEFGH1234 and xai-abcdefghijkl"
    assert redact(text) == "auth [redacted] then [redacted] and [redacted] and [redacted]"
    assert redact("plain text with sk in it") == "plain text with sk in it"


@pytest.mark.parametrize(
    ("role", "message"),
    [
        ({"provider": "openai", "api_key_env": "sk-abc123def456"}, "environment variable name"),
        ({"provider": "openai", "api_key_env": "gsk_abcdef123456"}, "environment variable name"),
        ({"provider": "openai", "api_key_env": "aB3dE5gH7jK9mN1pQ3sT5vW7"}, "environment variable name"),
        ({"provider": "openai_compatible", "base_url": "http://user:pw@host:8000/v1"}, "a password or a key"),
        ({"provider": "openai_compatible", "base_url": "http://host/v1?key=sk-abcdef123456"}, "a password or a key"),
        ({"provider": "openai_compatible", "base_url": "http://host/v1?api-version=1&token=x"}, "a password or a key"),
        (
            {"provider": "openai_compatible", "base_url": "http://host/v1?x=Bearer%20abcdefgh1234"},
            "a password or a key",
        ),
    ],
)
def test_settings_refuse_what_would_save_a_secret(role: dict, message: str) -> None:
    with pytest.raises(DrpoInputError, match=message):
        settings_from_dict({"roles": {"optimizer": role}})
    with pytest.raises(DrpoInputError, match="a password or a key"):
        settings_from_dict({"chroma_url": "http://admin:secret@chroma:8000"})
    assert settings_from_dict({"roles": {"optimizer": {"provider": "openai", "api_key_env": "MY_OPENAI_KEY"}}})


def test_resume_after_the_seed_file_changed_is_refused_until_it_is_restored(make_settings, embedder) -> None:
    from drpo.run.driver import optimize, resume
    from support.runs import roles
    from support.scripted import ScriptedChatModel

    settings = make_settings(depth=3)
    seeds = settings.runs_dir.parent / "seeds.txt"
    original = "\n".join(f"How do I get better at task {n}?" for n in range(8)) + "\n"
    seeds.write_text(original)
    settings = settings.model_copy(update={"seed_file": seeds, "run_id": "changed"})
    broken = ScriptedChatModel(fail_on=lambda text, count: count == 9)
    with pytest.raises(RuntimeError, match="injected"):
        optimize(settings, models=roles(broken), embedder=embedder)
    seeds.write_text(original.replace("task 3", "something else"))
    with pytest.raises(DrpoInputError, match=r"seed file .*seeds.txt changed since run changed started"):
        resume("changed", settings.runs_dir, models=roles(ScriptedChatModel()), embedder=embedder)
    seeds.write_text(original)
    done = resume("changed", settings.runs_dir, models=roles(ScriptedChatModel()), embedder=embedder)
    assert done.result is not None and done.result["depths_run"] == 3


@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_a_finished_runs_result_is_rebuilt_identical(finished_runs: Path, tmp_path: Path, damage: str) -> None:
    shutil.copytree(finished_runs, tmp_path / "runs")
    result = tmp_path / "runs" / "hurt" / "result.json"
    original = result.read_text()
    if damage == "deleted":
        result.unlink()
    else:
        result.write_text(original[:100])
    repaired = drpo("repair", "hurt", "--runs-dir", "runs", cwd=tmp_path)
    assert repaired.returncode == 0, repaired.stderr
    assert json.loads(result.read_text()) == json.loads(original)
    assert (result.with_name("result.json.damaged").exists()) == (damage == "truncated")
    assert json.loads((tmp_path / "runs" / "hurt" / "status.json").read_text())["status"] == "done"
    again = drpo("repair", "hurt", "--runs-dir", "runs", cwd=tmp_path)
    assert again.returncode == 0 and "nothing to repair" in again.stdout
    result.unlink()  # drpo resume on a finished run rebuilds too, and never relabels it failed
    resumed = drpo("resume", "hurt", "--runs-dir", "runs", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(result.read_text()) == json.loads(original)


def test_roles_left_out_are_named_at_start_and_memory_runs_get_no_resume_hint(tmp_path: Path) -> None:
    with FakeOpenAIServer(required_key="right") as server:
        config = fake_server_config(tmp_path / "c.yaml", server.base_url, depth=2)
        data = yaml.safe_load(config.read_text())
        del data["roles"]["aspect_selector"]
        # no selection calls: the embedded selector is started and named, and the first depth's answers
        # (where the missing key fails) do not wait for SmolLM2 to select aspects on a busy machine
        data["reward"] = {"mode": "static"}
        config.write_text(yaml.safe_dump(data))
        done = drpo(
            "optimize", "--config", str(config), "--checkpointer", "memory", "--runs-dir", "runs",
            "--local-model", "smollm2-135m", cwd=tmp_path,
        )  # fmt: skip
    assert "aspect_selector=local:smollm2-135m (not configured: --local-model)" in done.stdout
    assert "base=openai_compatible:fake," in done.stdout
    assert done.returncode == 2 and "resume" not in done.stderr  # an in-memory run cannot be resumed


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


DB_DAMAGE = {
    "truncated": lambda data: data[: len(data) // 2],
    "garbage": lambda data: b"<html>oops</html>" * 64,
    "empty": lambda data: b"",
}


@pytest.mark.parametrize("damage", sorted(DB_DAMAGE))
def test_damaged_checkpoints_are_named_and_repair_replays_them_from_the_journal(
    finished_runs: Path, tmp_path: Path, damage: str
) -> None:
    shutil.copytree(finished_runs, tmp_path / "runs")
    run = tmp_path / "runs" / "hurt"
    original = (run / "result.json").read_text()
    checkpoints = run / "checkpoints.sqlite"
    checkpoints.write_bytes(DB_DAMAGE[damage](checkpoints.read_bytes()))
    for command in ("status", "history", "resume"):
        done = drpo(command, "hurt", "--runs-dir", "runs", cwd=tmp_path)
        assert done.returncode == 2, (command, done.stderr)
        line = one_line(done.stderr)
        assert "checkpoints.sqlite" in line and "drpo repair hurt" in line and "resume with" not in line
    assert json.loads((run / "status.json").read_text())["status"] == "done"  # never relabelled failed
    repaired = drpo("repair", "hurt", "--runs-dir", "runs", cwd=tmp_path)
    assert repaired.returncode == 0, repaired.stderr
    assert "replayed from the call journal" in repaired.stdout
    assert json.loads((run / "result.json").read_text()) == json.loads(original)
    assert (run / "checkpoints.sqlite.damaged").is_file()
    history = drpo("history", "hurt", "--runs-dir", "runs", cwd=tmp_path)
    assert history.returncode == 0 and "d2-0-0" in history.stdout


@pytest.mark.parametrize("damage", sorted(DB_DAMAGE))
def test_a_damaged_journal_is_named_with_what_can_be_done(finished_runs: Path, tmp_path: Path, damage: str) -> None:
    shutil.copytree(finished_runs, tmp_path / "runs")
    run = tmp_path / "runs" / "hurt"
    journal = run / "journal.sqlite"
    journal.write_bytes(DB_DAMAGE[damage](journal.read_bytes()))
    done = drpo("resume", "hurt", "--runs-dir", "runs", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    line = one_line(done.stderr)
    assert "journal.sqlite" in line and "start over" in line
    assert json.loads((run / "status.json").read_text())["status"] == "done"
    shown = drpo("show", "hurt", "--runs-dir", "runs", cwd=tmp_path)
    assert shown.returncode == 0 and "best prompt" in shown.stdout  # the result itself is intact


def test_a_read_only_runs_dir_serves_reading_commands_and_refuses_writing_ones(
    finished_runs: Path, tmp_path: Path
) -> None:
    from support.mounts import read_only_view

    shutil.copytree(finished_runs, tmp_path / "runs")
    before = sorted(path.name for path in (tmp_path / "runs" / "hurt").iterdir())
    with read_only_view(tmp_path / "runs", tmp_path / "ro") as ro:
        for command in (["runs"], ["status", "hurt"], ["show", "hurt"], ["history", "hurt"]):
            done = drpo(*command, "--runs-dir", str(ro), cwd=tmp_path)
            assert done.returncode == 0, (command, done.stderr)
        assert "done" in drpo("status", "hurt", "--runs-dir", str(ro), cwd=tmp_path).stdout
        resumed = drpo("resume", "hurt", "--runs-dir", str(ro), cwd=tmp_path)
        assert resumed.returncode == 2
        assert "read-only" in one_line(resumed.stderr) and str(ro / "hurt") in resumed.stderr
        config = tmp_path / "runs" / "hurt" / "config.yaml"
        started = drpo("optimize", "--config", str(config), "--run-id", "new", "--runs-dir", str(ro), cwd=tmp_path)
        assert started.returncode == 2
        line = one_line(started.stderr)
        assert str(ro) in line and "not writable" in line and "resume" not in line
        forked = drpo("fork", "hurt", "--from-depth", "1", "--run-id", "f", "--runs-dir", str(ro), cwd=tmp_path)
        assert forked.returncode == 2 and "read-only" in one_line(forked.stderr) and "resume" not in forked.stderr
        removed = drpo("remove", "hurt", "--runs-dir", str(ro), cwd=tmp_path)
        assert removed.returncode == 2 and "read-only" in one_line(removed.stderr)
        assert "journal" not in removed.stderr and "resume" not in removed.stderr
    assert sorted(path.name for path in (tmp_path / "runs" / "hurt").iterdir()) == before
    assert not (tmp_path / "runs" / "new").exists()


def test_a_full_disk_mid_run_stops_cleanly_and_the_run_resumes_once_space_is_freed(tmp_path: Path) -> None:
    from support.mounts import grow, small_tmpfs

    with FakeOpenAIServer() as server, small_tmpfs(tmp_path / "small", "400k") as small:
        config = fake_server_config(tmp_path / "c.yaml", server.base_url, depth=6)
        data = yaml.safe_load(config.read_text())
        data["store_dir"] = str(tmp_path / "store")  # the Chroma store elsewhere: the run's own files fill the disk
        config.write_text(yaml.safe_dump(data))
        unbroken = drpo("optimize", "--config", str(config), "--run-id", "full", "--runs-dir", "big", cwd=tmp_path)
        assert unbroken.returncode == 0, unbroken.stderr
        stopped = drpo("optimize", "--config", str(config), "--run-id", "full", "--runs-dir", str(small), cwd=tmp_path)
        assert stopped.returncode == 2, stopped.stderr
        line = one_line(stopped.stderr)
        assert "disk full" in line and "drpo resume full" in line
        assert not [path for path in (small / "full").iterdir() if path.name.endswith(".tmp")]
        grow(small, "20m")
        resumed = drpo("resume", "full", "--runs-dir", str(small), cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stderr
        finished = json.loads((small / "full" / "result.json").read_text())
    expected = json.loads((tmp_path / "big" / "full" / "result.json").read_text())
    assert finished["best_prompt"] == expected["best_prompt"] and finished["depths_run"] == expected["depths_run"]
    assert finished["best"] == expected["best"]


@pytest.mark.parametrize("task", ["evaluate", "transition"])
def test_a_role_that_never_answers_usably_fails_the_run_and_it_resumes_once_fixed(tmp_path: Path, task: str) -> None:
    role = {"evaluate": "evaluator", "transition": "optimizer"}[task]
    with FakeOpenAIServer() as healthy:
        config = fake_server_config(tmp_path / "ok.yaml", healthy.base_url, depth=3)
        unbroken = drpo("optimize", "--config", str(config), "--run-id", "ok", "--runs-dir", "runs", cwd=tmp_path)
        assert unbroken.returncode == 0, unbroken.stderr
    with FakeOpenAIServer(empty_tasks={task}) as server:
        config = fake_server_config(tmp_path / "c.yaml", server.base_url, depth=3)
        stopped = drpo("optimize", "--config", str(config), "--run-id", "broken", "--runs-dir", "runs", cwd=tmp_path)
        assert stopped.returncode == 1, stopped.stderr
        line = one_line(stopped.stderr)
        assert f"the {role} (openai_compatible:fake)" in line and "last error" in line
        assert "drpo resume broken" in line
        status = json.loads((tmp_path / "runs" / "broken" / "status.json").read_text())
        assert status["status"] == "failed" and role in status["error"]
        assert not (tmp_path / "runs" / "broken" / "result.json").exists()
        again = drpo("resume", "broken", "--runs-dir", "runs", cwd=tmp_path)
        assert again.returncode == 1 and f"the {role}" in again.stderr  # still broken: fails again, asks again
        server.empty_tasks.clear()  # the provider is fixed
        fixed = drpo("resume", "broken", "--runs-dir", "runs", cwd=tmp_path)
        assert fixed.returncode == 0, fixed.stderr
        assert f"failures by role: {role}" in fixed.stdout
    result = json.loads((tmp_path / "runs" / "broken" / "result.json").read_text())
    expected = json.loads((tmp_path / "runs" / "ok" / "result.json").read_text())
    assert result["depths_run"] >= 3 and result["best_prompt"]
    if role == "evaluator":  # the same answers, judged again: the search is the unbroken one
        assert result["best_prompt"] == expected["best_prompt"] and result["depths_run"] == expected["depths_run"]
    assert {record["role"] for record in result["failures"]} == {role}
    shown = drpo("show", "broken", "--runs-dir", "runs", cwd=tmp_path)
    assert f"failures by role: {role}" in shown.stdout


@pytest.mark.parametrize("fault", ["429", "503"])
def test_a_provider_that_keeps_failing_is_named_and_the_run_resumes_later(tmp_path: Path, fault: str) -> None:
    with FakeOpenAIServer(fault_rate=1.0, fault_kinds=(fault,)) as server:
        config = fake_server_config(tmp_path / "c.yaml", server.base_url, depth=2)
        data = yaml.safe_load(config.read_text())
        for role in data["roles"].values():
            role["max_retries"] = 1
        config.write_text(yaml.safe_dump(data))
        stopped = drpo("optimize", "--config", str(config), "--run-id", "busy", "--runs-dir", "runs", cwd=tmp_path)
        assert stopped.returncode == 1, stopped.stderr
        line = one_line(stopped.stderr)
        assert re.search(rf"role \w+ \(openai_compatible:fake at {re.escape(server.base_url)}", line), line
        assert f"still failing after 1 retries ({fault})" in line and "drpo resume busy" in line
        server.fault_rate = 0.0  # the provider recovers
        resumed = drpo("resume", "busy", "--runs-dir", "runs", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((tmp_path / "runs" / "busy" / "status.json").read_text())["status"] == "done"


@pytest.mark.parametrize("damage", ["garbage", "half", "header"])
def test_a_bad_gguf_file_is_one_line_and_creates_no_run(tmp_path: Path, damage: str) -> None:
    from drpo.llm.local_models import resolve_local_model

    real = resolve_local_model("smollm2-135m").read_bytes()
    bad = tmp_path / "model.gguf"
    bad.write_bytes({"garbage": b"not a model" * 500, "half": real[: len(real) // 2], "header": real[:2000]}[damage])
    done = drpo("optimize", "--local-model", str(bad), "--run-id", "x", "--runs-dir", "runs", cwd=tmp_path)
    assert done.returncode == 2
    line = one_line(done.stderr)
    assert str(bad) in line and ("GGUF" in line or "truncated" in line) and "resume" not in line
    assert not (tmp_path / "runs" / "x").exists()


def test_an_unreachable_postgres_blocks_no_run_id_and_a_blocked_run_can_be_removed(
    tmp_path: Path, postgres_dsn: str
) -> None:
    dead = "postgresql://drpo@127.0.0.1:9/gone"
    with FakeOpenAIServer() as server:
        config = fake_server_config(tmp_path / "c.yaml", server.base_url, depth=2)
        refused = drpo("optimize", "--config", str(config), "--checkpointer", dead, "--run-id", "pg", "--runs-dir",
                       "runs", cwd=tmp_path)  # fmt: skip
        assert refused.returncode == 2 and "cannot connect to Postgres at 127.0.0.1:9/gone" in one_line(refused.stderr)
        assert not (tmp_path / "runs" / "pg").exists()  # the id stays free
        done = drpo("optimize", "--config", str(config), "--checkpointer", postgres_dsn, "--run-id", "pg",
                    "--runs-dir", "runs", cwd=tmp_path)  # fmt: skip
        assert done.returncode == 0, done.stderr
    # the database goes away: the local run is not stuck behind it
    saved = tmp_path / "runs" / "pg" / "config.yaml"
    saved.write_text(saved.read_text().replace(postgres_dsn, dead))
    resumed = drpo("resume", "pg", "--runs-dir", "runs", cwd=tmp_path)
    assert resumed.returncode == 2 and "cannot connect to Postgres" in one_line(resumed.stderr)
    removed = drpo("remove", "pg", "--runs-dir", "runs", cwd=tmp_path)
    assert removed.returncode == 0, removed.stderr
    assert "its rows there stay" in removed.stdout and not (tmp_path / "runs" / "pg").exists()
    cleaned = drpo("remove", "pg", "--runs-dir", "runs", "--checkpointer", postgres_dsn, cwd=tmp_path)
    assert cleaned.returncode == 0, cleaned.stderr
    gone = drpo("status", "pg", "--runs-dir", "runs", "--checkpointer", postgres_dsn, cwd=tmp_path)
    assert gone.returncode == 2 and "unknown run 'pg'" in gone.stderr


def test_filesystem_faults_are_recognised_by_sqlite_code_and_errno_not_by_wording(tmp_path: Path) -> None:
    import errno
    import sqlite3

    from drpo.store.disk_faults import DISK_FULL, READ_ONLY, filesystem_fault

    database = tmp_path / "run.sqlite"
    with sqlite3.connect(database) as connection:
        connection.execute("create table t (x)")
    read_only = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    with pytest.raises(sqlite3.Error) as raised:
        read_only.execute("insert into t values (1)")
    read_only.close()
    assert filesystem_fault(RuntimeError("while saving")) is None
    wrapped = RuntimeError("checkpoint write failed")
    wrapped.__cause__ = raised.value
    assert filesystem_fault(wrapped)[0] == READ_ONLY  # found through the cause chain
    full = sqlite3.OperationalError("a message in any language")
    full.sqlite_errorcode = 13 | (3 << 8)  # an extended SQLITE_FULL code
    assert filesystem_fault(full)[0] == DISK_FULL
    worded = sqlite3.OperationalError("database or disk is full")  # the wording alone decides nothing
    assert filesystem_fault(worded) is None
    assert filesystem_fault(OSError(errno.ENOSPC, "No space left on device", "status.json"))[0] == DISK_FULL


def test_a_run_id_too_long_for_the_filesystem_is_one_line_everywhere(finished_runs: Path, tmp_path: Path) -> None:
    shutil.copytree(finished_runs, tmp_path / "runs")
    too_long = "a" * 300
    for command in (["chat"], ["show"], ["export"], ["report"], ["repair"], ["status"], ["remove"], ["summary"],
                    ["history"], ["resume"], ["eval", "show"]):  # fmt: skip
        done = drpo(*command, too_long, "--runs-dir", "runs", cwd=tmp_path)
        assert done.returncode == 2, (command, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
        assert "Errno" not in done.stderr and "a" * 100 not in done.stderr  # shortened, never the OS's complaint


def test_a_config_with_a_key_given_twice_is_refused_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "twice.yaml"
    config.write_text("search:\n  depth: 1\n  depth: 5\n")
    done = drpo("optimize", "--config", str(config), "--dry-run", cwd=tmp_path)
    assert done.returncode == 2 and "duplicate key 'depth'" in done.stderr and "line 3" in done.stderr
    merged = tmp_path / "merged.yaml"  # a << merge may still be overridden, as YAML intends
    merged.write_text("x: &base {provider: local, max_tokens: 100}\nroles:\n  base: {<<: *base, max_tokens: 200}\n")
    from drpo.settings import read_settings_file

    assert read_settings_file(merged)["roles"]["base"] == {"provider": "local", "max_tokens": 200}


def test_symlinks_are_never_followed_when_drpo_writes_or_deletes(finished_runs: Path, tmp_path: Path) -> None:
    shutil.copytree(finished_runs, tmp_path / "runs")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    planted = tmp_path / "runs" / "good" / "report.html"
    planted.unlink(missing_ok=True)
    planted.symlink_to(victim)
    done = drpo("report", "good", "--runs-dir", "runs", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert victim.read_text() == "precious"  # the link was replaced by the report, not written through
    assert not planted.is_symlink() and "<html" in planted.read_text().lower()
    elsewhere = tmp_path / "elsewhere"
    shutil.move(tmp_path / "runs" / "hurt", elsewhere)
    (tmp_path / "runs" / "hurt").symlink_to(elsewhere, target_is_directory=True)
    removed = drpo("remove", "hurt", "--runs-dir", "runs", cwd=tmp_path)
    assert removed.returncode == 2 and "symbolic link" in one_line(removed.stderr)
    assert (elsewhere / "result.json").is_file() and (tmp_path / "runs" / "hurt").is_symlink()
    assert not list((tmp_path / "runs" / "good").glob(".*.tmp"))  # no stray temporary files


@pytest.mark.parametrize("command", ["optimize", "eval"])
def test_a_reply_that_is_a_web_page_is_a_configuration_error_naming_role_and_url(tmp_path: Path, command: str) -> None:
    with FakeOpenAIServer(reply_shape="html") as server:
        config = fake_server_config(tmp_path / "c.yaml", server.base_url, depth=2)
        args = ["--system", "base", "--queries", str(_queries(tmp_path))] if command == "eval" else []
        done = drpo(*(["eval", "run"] if command == "eval" else ["optimize"]), "--config", str(config), *args,
                    cwd=tmp_path)  # fmt: skip
    line = one_line(done.stderr)
    assert done.returncode == 2, done.stderr
    assert "not a chat completion" in line and server.base_url in line and "role " in line
    assert "resume" not in line and "Traceback" not in done.stderr


@pytest.mark.parametrize("command", ["optimize", "eval"])
def test_a_reply_without_choices_fails_resumably_naming_the_role(tmp_path: Path, command: str) -> None:
    with FakeOpenAIServer(reply_shape="no-choices") as server:
        config = fake_server_config(tmp_path / "c.yaml", server.base_url, depth=2)
        args = ["--system", "base", "--queries", str(_queries(tmp_path))] if command == "eval" else []
        done = drpo(*(["eval", "run"] if command == "eval" else ["optimize"]), "--config", str(config), *args,
                    "--run-id", "nochoice", cwd=tmp_path)  # fmt: skip
    line = one_line(done.stderr)
    assert done.returncode == 1, done.stderr
    assert "no choices" in line and "role " in line and "drpo resume nochoice" in line
    assert "IndexError" not in done.stderr and "Traceback" not in done.stderr


def _queries(folder: Path) -> Path:
    path = folder / "queries.txt"
    path.write_text("How do I boil an egg?\nWrite a haiku about rain.\n")
    return path


@pytest.mark.parametrize("shape", ["hang", "trickle"])
def test_a_hung_or_trickling_server_ends_the_run_at_the_deadline_and_it_resumes(tmp_path: Path, shape: str) -> None:
    """A server that never answers, or sends one byte every 0.2 s (so no read timeout ever fires), stops the
    run after timeout/deadline and the retries, naming the role; nothing waits for ever."""
    with FakeOpenAIServer(reply_shape=shape) as server:
        config = fake_server_config(tmp_path / "c.yaml", server.base_url, depth=2)
        data = yaml.safe_load(config.read_text())
        for spec in data["roles"].values():
            spec.update({"timeout": 1, "deadline": 3, "max_retries": 1, "retry_base_delay": 0})
        config.write_text(yaml.safe_dump(data))
        started = time.monotonic()
        done = drpo("optimize", "--config", str(config), "--run-id", "stuck", cwd=tmp_path, timeout=120)
        elapsed = time.monotonic() - started
    line = one_line(done.stderr)
    assert done.returncode == 1, done.stderr
    assert "role " in line and "still failing after 1 retries" in line and "drpo resume stuck" in line
    if shape == "trickle":
        assert "3 s deadline" in line
    assert elapsed < 60  # bounded by 2 attempts x 3 s (+ start-up), not by the server
    assert json.loads((tmp_path / "drpo_runs" / "stuck" / "status.json").read_text())["status"] == "failed"


ESCAPES = "Be kind.\x1b]0;PWNED\x07\x1b[2J\x1b[8mhidden\x9b31m"


def test_escape_sequences_from_prompts_and_replies_are_printed_visibly(tmp_path: Path) -> None:
    """An OSC title change, a screen clear and hidden text in a prompt reach no terminal raw."""
    with FakeOpenAIServer() as server:
        config = fake_server_config(tmp_path / "c.yaml", server.base_url, depth=2, review=True)
        data = yaml.safe_load(config.read_text())
        data["search"]["initial_prompt"] = ESCAPES
        config.write_text(yaml.safe_dump(data))
        waiting = drpo("optimize", "--config", str(config), "--run-id", "esc", cwd=tmp_path)
        assert waiting.returncode == 0, waiting.stderr
        outputs = [waiting, drpo("review", "esc", "--full", cwd=tmp_path)]
        finished = drpo("review", "esc", "--accept", cwd=tmp_path)
        assert finished.returncode == 0, finished.stderr
        outputs += [finished, drpo("show", "esc", cwd=tmp_path), drpo("export", "esc", "--format", "txt", cwd=tmp_path)]
    for done in outputs:
        assert done.returncode == 0, done.stderr
        for stream in (done.stdout, done.stderr):
            assert "\x1b" not in stream and "\x07" not in stream and "\x9b" not in stream
    unwrapped = [done.stdout.replace("\n", "") for done in outputs]  # Rich wraps long lines at 80 columns
    assert "\\x1b]0;P" in unwrapped[1]  # shown (the table cuts the prompt), not swallowed
    assert "\\x1b[2J\\x1b[8mhidden\\x9b31m" in unwrapped[-1]
    exported = json.loads(drpo("export", "esc", "--format", "json", cwd=tmp_path).stdout)
    assert ESCAPES in exported["best_prompt"]  # the data itself is kept as it was


def test_the_response_cache_prints_no_library_warning(tmp_path: Path) -> None:
    with FakeOpenAIServer() as server:
        config = fake_server_config(tmp_path / "c.yaml", server.base_url, depth=2)
        first = drpo("optimize", "--config", str(config), "--cache", "--run-id", "one", cwd=tmp_path)
        second = drpo("optimize", "--config", str(config), "--cache", "--run-id", "two", cwd=tmp_path)
    assert first.returncode == 0 and second.returncode == 0, second.stderr
    usage = json.loads((tmp_path / "drpo_runs" / "two" / "result.json").read_text())["usage"]
    assert sum(role.get("cached_calls", 0) for role in usage.values()) > 0  # the cache was read
    for done in (first, second):
        assert "Warning" not in done.stderr and "warn" not in done.stderr.lower(), done.stderr


def test_commands_on_the_wrong_kind_of_run_name_its_kind_and_what_works(tmp_path: Path) -> None:
    with FakeOpenAIServer() as server:
        config = fake_server_config(tmp_path / "c.yaml", server.base_url, depth=2)
        queries = _queries(tmp_path)
        made = drpo("eval", "run", "--config", str(config), "--system", "base", "--queries", str(queries),
                    "--run-id", "ev", cwd=tmp_path)  # fmt: skip
        assert made.returncode == 0, made.stderr
        for command in (["show"], ["history"], ["review"], ["export", "--format", "txt"], ["chat"], ["report"],
                        ["summary"], ["fork", "--from-depth", "1"]):  # fmt: skip
            done = drpo(*command[:1], "ev", *command[1:], cwd=tmp_path, env={"TERM": "dumb"})
            line = one_line(done.stderr)
            assert done.returncode == 2, (command, done.stdout, done.stderr)
            assert "is an evaluation" in line and "drpo eval show" in line, (command, line)
            assert "Traceback" not in done.stderr and "KeyError" not in done.stderr


def test_a_failed_preflight_creates_no_run_and_the_id_stays_free(tmp_path: Path) -> None:
    with FakeOpenAIServer() as server:
        config = fake_server_config(tmp_path / "c.yaml", server.base_url, depth=2)
        data = yaml.safe_load(config.read_text())
        data["roles"]["optimizer"]["api_key_env"] = "DRPO_TEST_KEY_NOBODY_SET"
        keyless = tmp_path / "keyless.yaml"
        keyless.write_text(yaml.safe_dump(data))
        for args, expected in (
            (["--config", str(keyless)], "DRPO_TEST_KEY_NOBODY_SET is not set"),
            (["--config", str(config), "--chroma-url", "http://127.0.0.1:9"], "cannot reach the Chroma server"),
        ):  # fmt: skip
            done = drpo("optimize", *args, "--run-id", "same", cwd=tmp_path)
            line = one_line(done.stderr)
            assert done.returncode == 2 and expected in line, done.stderr
            assert not (tmp_path / "drpo_runs" / "same").exists()
        assert not line.endswith("ValueError")  # the cause is named, not just its type
        done = drpo("optimize", "--config", str(config), "--run-id", "same", cwd=tmp_path)
        assert done.returncode == 0, done.stderr  # the id was never taken


def test_a_relative_seed_file_is_found_when_the_run_resumes_from_another_directory(tmp_path: Path) -> None:
    start, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    start.mkdir()
    elsewhere.mkdir()
    (start / "seeds.txt").write_text("".join(f"Question number {i}: how do I cook rice?\n" for i in range(6)))
    with FakeOpenAIServer() as server:
        config = fake_server_config(start / "c.yaml", server.base_url, depth=2, review=True)
        waiting = drpo("optimize", "--config", "c.yaml", "--seed-file", "seeds.txt", "--seed-format", "text",
                       "--run-id", "rel", "--runs-dir", str(tmp_path / "runs"), cwd=start)  # fmt: skip
        assert waiting.returncode == 0, waiting.stderr
        saved = yaml.safe_load((tmp_path / "runs" / "rel" / "config.yaml").read_text())
        assert saved["seed_file"] == str(start / "seeds.txt")  # stored resolved
        seeds = (start / "seeds.txt").read_text()
        (start / "seeds.txt").unlink()
        gone = drpo("review", "rel", "--accept", "--runs-dir", str(tmp_path / "runs"), cwd=elsewhere)
        assert gone.returncode == 2 and str(start / "seeds.txt") in one_line(gone.stderr)  # the path looked for
        (start / "seeds.txt").write_text(seeds)
        done = drpo("review", "rel", "--accept", "--runs-dir", str(tmp_path / "runs"), cwd=elsewhere)
        assert done.returncode == 0, done.stderr
    assert config.is_file()
    assert json.loads((tmp_path / "runs" / "rel" / "status.json").read_text())["status"] == "done"


def test_a_chroma_url_carrying_a_token_is_refused_and_never_printed(tmp_path: Path) -> None:
    done = drpo("optimize", "--dry-run", "--chroma-url", "http://127.0.0.1:9/?token=tok-secret-value-99", cwd=tmp_path)
    assert done.returncode == 2 and "a password or a key" in one_line(done.stderr)
    assert "tok-secret-value-99" not in done.stderr + done.stdout
    from drpo.settings import has_credentials

    assert not has_credentials("http://host:8000/v1?api-version=2024-06-01")  # ordinary query values pass


def test_true_is_no_number_and_repeated_seed_lines_are_reported(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("search: {beam_width: true}\n")
    done = drpo("optimize", "--config", str(config), "--dry-run", cwd=tmp_path)
    assert done.returncode == 2 and "search.beam_width: True is not a number" in one_line(done.stderr)
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("How do I cook rice?\n" * 20 + "Explain gravity.\n")
    planned = drpo("optimize", "--seed-file", str(seeds), "--seed-format", "text", "--dry-run", cwd=tmp_path)
    assert planned.returncode == 0, planned.stderr
    assert "19 repeated queries left out, 2 distinct" in planned.stderr


def test_an_evaluation_with_no_usable_grade_fails_and_resumes_once_the_judge_is_fixed(tmp_path: Path) -> None:
    with FakeOpenAIServer(empty_tasks={"grade"}) as server:
        config = fake_server_config(tmp_path / "c.yaml", server.base_url, depth=2)
        args = ["eval", "run", "--config", str(config), "--system", "base", "--system", "fixed",
                "--queries", str(_queries(tmp_path)), "--run-id", "blank"]  # fmt: skip
        failed = drpo(*args, cwd=tmp_path)
        line = one_line(failed.stderr)
        assert failed.returncode == 1, failed.stderr
        assert "every grade of base, fixed stayed unusable" in line and "drpo resume blank" in line
        status = json.loads((tmp_path / "drpo_runs" / "blank" / "status.json").read_text())
        assert status["status"] == "failed" and not (tmp_path / "drpo_runs" / "blank" / "eval.json").exists()
        server.empty_tasks.clear()  # the judge is fixed
        resumed = drpo("resume", "blank", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads((tmp_path / "drpo_runs" / "blank" / "eval.json").read_text())
    assert result["parse_failures"] == {"base": 0, "fixed": 0}
    assert result["table"]["base"]["Average"]["mean"] is not None


def test_a_repair_killed_midway_leaves_the_run_done_and_the_next_repair_completes_it(tmp_path: Path) -> None:
    import signal
    import sqlite3

    from support.cli import drpo_background

    with FakeOpenAIServer() as server:
        config = fake_server_config(tmp_path / "c.yaml", server.base_url, depth=2)
        made = drpo("optimize", "--config", str(config), "--run-id", "fin", "--runs-dir", "runs", cwd=tmp_path)
        assert made.returncode == 0, made.stderr
        run = tmp_path / "runs" / "fin"
        original = json.loads((run / "result.json").read_text())
        with sqlite3.connect(run / "journal.sqlite") as journal:  # one call the replay must make again...
            journal.execute("delete from calls where rowid = (select max(rowid) from calls)")
        (run / "checkpoints.sqlite").write_bytes(b"not a database at all" * 100)
        server.latency = 60  # ... from a server that takes a minute: the repair is killed while it waits
        asked_before = server.received
        repair = drpo_background("repair", "fin", "--runs-dir", "runs", cwd=tmp_path)
        deadline = time.monotonic() + 60
        while server.received == asked_before and time.monotonic() < deadline:
            time.sleep(0.1)  # the replay reached the call the journal lacks, and waits for the server
        assert server.received > asked_before
        repair.send_signal(signal.SIGKILL)
        repair.wait(timeout=30)
        for command in ("status", "show"):
            done = drpo(command, "fin", "--runs-dir", "runs", cwd=tmp_path)
            assert done.returncode == 0 and "done" in done.stdout, (command, done.stdout, done.stderr)
            assert "running" not in done.stdout and "interrupted" not in done.stdout
        server.latency = 0
        completed = drpo("repair", "fin", "--runs-dir", "runs", cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert json.loads((run / "result.json").read_text()) == original
    assert json.loads((run / "status.json").read_text())["status"] == "done" and not (run / "repair.pending").exists()
