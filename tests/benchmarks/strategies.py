"""Calls planned and made per search strategy at the paper's shape (W=2, M=3, D=20, I=0), whole process,
against the fake OpenAI-compatible server: equal cost for beam and Monte Carlo is checked, not assumed.

Run: PYTHONPATH=tests .venv/bin/python tests/benchmarks/strategies.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from support.fake_openai import FakeOpenAIServer

DRPO = [sys.executable, "-m", "drpo.cli"]


def config(base_url: str, strategy: str) -> dict:
    role = {"provider": "openai_compatible", "base_url": base_url, "model": "fake", "max_retries": 0}
    return {
        "roles": {
            "base": dict(role),
            "optimizer": {**role, "temperature": 0.7},
            "evaluator": dict(role),
            "aspect_selector": dict(role),
        },
        "search": {
            "beam_width": 2,
            "num_actions": 3,
            "depth": 20,
            "max_depth_increase": 0,
            "concurrency": 8,
            "strategy": strategy,
        },
    }


def main() -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    header = ("strategy", "planned opt/base/judge", "made opt/base/judge", "sampled", "requests", "wall")
    print(f"{header[0]:9} {header[1]:>24} {header[2]:>22} {header[3]:>8} {header[4]:>9} {header[5]:>7}")
    for strategy in ("beam", "greedy", "mc"):
        with tempfile.TemporaryDirectory() as folder, FakeOpenAIServer() as server:
            work = Path(folder)
            (work / "c.yaml").write_text(yaml.safe_dump(config(server.base_url, strategy)))
            args = ["--config", str(work / "c.yaml"), "--runs-dir", str(work / "runs")]
            plan = subprocess.run([*DRPO, "optimize", *args, "--dry-run"], capture_output=True, text=True, env=env)
            planned = [line.split("│")[2].strip() for line in plan.stdout.splitlines() if line.count("│") > 5]
            started = time.time()
            subprocess.run([*DRPO, "optimize", *args, "--run-id", "s"], capture_output=True, env=env, check=True)
            wall = time.time() - started
            result = json.loads((work / "runs" / "s" / "result.json").read_text())
        calls = {role: usage["calls"] for role, usage in result["usage"].items()}
        sampled = sum(len(depth["candidates"]) for depth in result["depths"][1:])
        made = f"{calls.get('optimizer', 0)}/{calls.get('base', 0)}/{calls.get('evaluator', 0)}"
        roles = dict(zip(["aspect_selector", "base", "evaluator", "optimizer"], planned, strict=False))
        plan_text = f"{roles.get('optimizer')}/{roles.get('base')}/{roles.get('evaluator')}"
        print(f"{strategy:9} {plan_text:>24} {made:>22} {sampled:>8} {len(server.requests):>9} {wall:>6.1f}s")


if __name__ == "__main__":
    main()
