"""Helpers for running the graph in tests."""

from __future__ import annotations

from typing import Any

from drpo.run.driver import RunOutcome, optimize, resume
from drpo.settings import ROLE_NAMES, Settings
from drpo.store.embeddings import Embedder


def roles(model: Any) -> dict[str, Any]:
    return {role: model for role in ROLE_NAMES}


def comparable(result: dict[str, Any]) -> dict[str, Any]:
    """A result without the fields that legitimately differ between two runs (the run id)."""
    return {key: value for key, value in result.items() if key != "run_id"}


def run(settings: Settings, models: dict[str, Any], embedder: Embedder, run_id: str) -> RunOutcome:
    return optimize(settings.model_copy(update={"run_id": run_id}), models=models, embedder=embedder)


def resume_run(settings: Settings, models: dict[str, Any], embedder: Embedder, run_id: str) -> RunOutcome:
    return resume(run_id, settings.runs_dir, models=models, embedder=embedder)
