"""Run the ``drpo`` CLI as a real subprocess, pointed at a fake OpenAI-compatible server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

DRPO = [sys.executable, "-m", "drpo.cli"]


def fake_server_config(path: Path, base_url: str, **search: Any) -> Path:
    role = {"provider": "openai_compatible", "base_url": base_url, "model": "fake", "max_retries": 0}
    config = {
        "roles": {
            "base": {**role, "max_tokens": 256},
            "optimizer": {**role, "temperature": 0.7},
            "evaluator": dict(role),
            "aspect_selector": dict(role),
        },
        "search": {"depth": 4, "beam_width": 2, "num_actions": 3, "concurrency": 2, **search},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONSAFEPATH": "1"})
    return env


def drpo(
    *args: str, cwd: Path, timeout: float = 240, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DRPO, *args], cwd=cwd, env={**cli_env(), **(env or {})}, capture_output=True, text=True, timeout=timeout,
        check=False,
    )  # fmt: skip


def drpo_background(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*DRPO, *args], cwd=cwd, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
