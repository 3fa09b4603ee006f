"""Whether the optimizer's M samples come from one request with ``n``: probed once per server, remembered
in the store, recorded in the run's journal, and forced either way by ``sample_with_n``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from drpo.llm.n_support import FEATURE, decide_n
from drpo.run.services import build_services
from drpo.settings import load_settings
from drpo.store.call_journal import CallJournal
from drpo.store.run_dir import RunDir
from drpo.store.server_features import ServerFeatures
from support.cli import drpo, fake_server_config
from support.fake_openai import FakeOpenAIServer


def entries(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def optimizer_caller(tmp_path: Path, base_url: str, name: str, embedder):
    config = fake_server_config(tmp_path / f"{name}.yaml", base_url)
    settings = load_settings(config, {"runs_dir": str(tmp_path / "runs"), "store_dir": str(tmp_path / "store")})
    run_dir = RunDir(tmp_path / "runs" / name)
    run_dir.root.mkdir(parents=True)
    services = build_services(settings, run_dir, embedder=embedder)
    return services


@pytest.mark.parametrize(("mode", "supported"), [("honour", True), ("ignore", False), ("refuse", False)])
def test_one_probe_per_server_then_the_store_remembers(tmp_path: Path, embedder, mode: str, supported: bool) -> None:
    log = tmp_path / "requests.jsonl"
    with FakeOpenAIServer(log_path=log, n_mode=mode) as server:
        first = optimizer_caller(tmp_path, server.base_url, "first", embedder)
        assert first.callers["optimizer"].samples_with_n is supported
        first.close()
        probes = [entry for entry in entries(log) if entry.get("task") == "probe"]
        assert len(probes) == (1 if mode != "refuse" else 0)  # a refusal is a 400, logged as no reply
        second = optimizer_caller(tmp_path, server.base_url, "second", embedder)
        assert second.callers["optimizer"].samples_with_n is supported
        second.close()
        assert [entry for entry in entries(log) if entry.get("task") == "probe"] == probes  # no second probe
    features = ServerFeatures(tmp_path / "store" / "server_features.sqlite")
    assert features.get(FEATURE, server.base_url, "fake") is supported
    features.close()


def test_a_resumed_run_keeps_its_own_decision(tmp_path: Path, embedder) -> None:
    """The journal's answer wins over the store's, so a resumed run keys its calls as before."""
    with FakeOpenAIServer() as server:
        services = optimizer_caller(tmp_path, server.base_url, "run", embedder)
        caller = services.callers["optimizer"]
        assert caller.samples_with_n is True
        features = ServerFeatures(tmp_path / "store" / "other.sqlite")
        features.put(FEATURE, server.base_url, "fake", False)  # the server changed since
        assert decide_n(caller, services.journal, features) is True
        fresh = CallJournal.sqlite(tmp_path / "fresh.sqlite")
        assert decide_n(caller, fresh, features) is False  # a new run goes by the store
        fresh.close()
        features.close()
        services.close()


def test_the_setting_forces_either_way_without_a_probe(tmp_path: Path) -> None:
    log = tmp_path / "requests.jsonl"
    with FakeOpenAIServer(log_path=log, n_mode="ignore") as server:
        config = fake_server_config(tmp_path / "config.yaml", server.base_url, depth=2)
        data = yaml.safe_load(config.read_text())
        data["roles"]["optimizer"]["sample_with_n"] = False
        config.write_text(yaml.safe_dump(data))
        done = drpo("optimize", "--config", str(config), "--run-id", "r", "--runs-dir", "runs", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    seen = entries(log)
    assert not [entry for entry in seen if entry.get("task") == "probe"]
    transitions = [entry for entry in seen if entry.get("task") == "transition"]
    assert transitions and all(entry["n"] == 1 for entry in transitions)  # M requests of one sample each


def test_a_server_that_ignores_n_gets_one_request_per_sample(tmp_path: Path) -> None:
    """The probe finds out, so the run does not lose M-1 of every M samples to a server that drops n."""
    log = tmp_path / "requests.jsonl"
    with FakeOpenAIServer(log_path=log, n_mode="ignore") as server:
        config = fake_server_config(tmp_path / "config.yaml", server.base_url, depth=2)
        done = drpo("optimize", "--config", str(config), "--run-id", "r", "--runs-dir", "runs", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "runs" / "r" / "result.json").read_text())
    transitions = [entry for entry in entries(log) if entry.get("task") == "transition"]
    assert len(transitions) == 3  # the root's M=3 samples, one request each
    assert len(result["depths"][1]["candidates"]) == 3
