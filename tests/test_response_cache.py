"""The optional response cache: an identical re-run is free, samples stay distinct, off by default."""

from __future__ import annotations

import json
from pathlib import Path

from support.cli import drpo, fake_server_config
from support.fake_openai import FakeOpenAIServer


def optimize(tmp_path: Path, config: Path, run_id: str, *flags: str) -> dict:
    done = drpo("optimize", "--config", str(config), "--run-id", run_id, "--runs-dir", "runs", *flags, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return json.loads((tmp_path / "runs" / run_id / "result.json").read_text())


def searched(result: dict) -> list:
    return [[(c["id"], c["prompt"], c["reward"]) for c in depth["candidates"]] for depth in result["depths"]]


def test_an_identical_rerun_is_answered_from_the_cache(tmp_path: Path) -> None:
    with FakeOpenAIServer() as server:
        config = fake_server_config(tmp_path / "config.yaml", server.base_url, depth=3)
        text = config.read_text()
        config.write_text(text + "cache:\n  enabled: true\n  sampling_roles: true\n")
        first = optimize(tmp_path, config, "first")
        made = len(server.requests)
        second = optimize(tmp_path, config, "second")
        assert len(server.requests) == made  # nothing reached the server
    assert searched(second) == searched(first) and second["best_prompt"] == first["best_prompt"]
    assert all(usage["calls"] == 0 and usage["input_tokens"] == 0 for usage in second["usage"].values())
    cached = sum(usage.get("cached_calls", 0) for usage in second["usage"].values())
    aspect_selections = first["usage"]["aspect_selector"]["calls"]  # these come from the aspect cache
    assert cached == sum(usage["calls"] for usage in first["usage"].values()) - aspect_selections
    children = [c["prompt"] for c in second["depths"][1]["candidates"]]
    assert len(children) == 3 and len(set(children)) == 3  # the M samples were not collapsed into one


def test_sampling_roles_and_disabled_caches_call_the_server(tmp_path: Path) -> None:
    with FakeOpenAIServer() as server:
        config = fake_server_config(tmp_path / "config.yaml", server.base_url, depth=3)
        first = optimize(tmp_path, config, "plain-a", "--cache")
        before = len(server.requests)
        again = optimize(tmp_path, config, "plain-b", "--cache")
        optimizer_calls = first["usage"]["optimizer"]["calls"]
        assert len(server.requests) - before == optimizer_calls  # temperature 0.7: not cached by default
        assert again["usage"]["evaluator"]["calls"] == 0
        before = len(server.requests)
        optimize(tmp_path, config, "plain-c")
        fresh = sum(usage["calls"] for usage in first["usage"].values()) - first["usage"]["aspect_selector"]["calls"]
        assert len(server.requests) - before == fresh  # cache off: every call but the cached aspect selections
