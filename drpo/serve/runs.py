"""Open a finished run for serving: its settings, its optimized prompt and ICL collection in Chroma, and the
base model that answers (its own, or one chosen instead)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drpo.errors import DrpoInputError
from drpo.settings import RoleSpec, Settings, settings_from_dict
from drpo.store.embeddings import Embedder
from drpo.store.icl_store import IclStore, chroma_client_for
from drpo.store.run_dir import RunDir, find_run, require_kind


@dataclass
class ServedRun:
    run_id: str
    system_prompt: str
    store: IclStore
    k: int
    base_mode: str
    embedding_model: str


def open_run_for_serving(run: Path, runs_dir: Path, embedder: Embedder | None = None) -> ServedRun:
    run_dir = find_run(run, runs_dir)
    require_kind(run_dir, "prompt", "serving (chat, AlignedChatModel)")
    result = run_dir.read_result()
    if result is None:
        raise DrpoInputError(f"run {run_dir.run_id} has not finished; continue it with: drpo resume {run_dir.run_id}")
    serving: dict[str, Any] = result.get("serving") or {}
    name = serving.get("icl_collection")
    if not name:
        raise DrpoInputError(f"{run_dir.result} names no ICL collection")
    settings = run_settings(run_dir)
    store_dir = settings.resolved_store_dir()
    embedder = embedder or Embedder(serving.get("embedding_model", settings.embedding_model))
    try:
        store = IclStore.open_existing(chroma_client_for(settings.chroma_url, store_dir), name, embedder)
    except DrpoInputError:
        raise
    except Exception:
        where = settings.chroma_url or store_dir
        raise DrpoInputError(f"ICL collection {name!r} of run {run_dir.run_id} not found in {where}") from None
    if store.count() == 0:
        raise DrpoInputError(f"ICL collection {name!r} of run {run_dir.run_id} is empty")
    return ServedRun(
        run_id=run_dir.run_id,
        system_prompt=result["best_prompt"],
        store=store,
        k=int(serving.get("icl_k", settings.search.icl_k)),
        base_mode=str(serving.get("base_mode", "chat")),
        embedding_model=embedder.name,
    )


@dataclass(frozen=True)
class UpstreamChoice:
    """Which model answers a served run: its own base model unless one of these replaces it."""

    local_model: str | None = None
    base_model: str | None = None
    base_url: str | None = None

    def __post_init__(self) -> None:
        if self.local_model and (self.base_model or self.base_url):
            raise DrpoInputError(
                "--local-model replaces the base model: give it alone, not with --base-model/--base-url"
            )

    def applied_to(self, spec: RoleSpec) -> RoleSpec:
        if self.local_model:
            return spec.model_copy(update={"provider": "local", "model": self.local_model, "base_url": None})
        update: dict[str, object] = {}
        if self.base_model:
            update["model"] = self.base_model
        if self.base_url:
            update["base_url"] = self.base_url
            if spec.provider == "local":
                update["provider"] = "openai_compatible"
        return RoleSpec.model_validate({**spec.model_dump(), **update}) if update else spec


def run_settings(run_dir: RunDir) -> Settings:
    """The settings a run was made with, its runs directory being the one it was found in."""
    return settings_from_dict({**run_dir.read_config(), "runs_dir": str(run_dir.root.parent)})


def run_base_model(run: Path, runs_dir: Path, local_model: str | None = None) -> tuple[Any, Any]:
    """The run's configured base model (or a local GGUF/packaged model instead), plus the server pool
    that must stay alive while it is used."""
    from drpo.llm.local_server import LocalServerPool
    from drpo.llm.providers import build_role_model

    settings = run_settings(find_run(run, runs_dir))
    spec = UpstreamChoice(local_model=local_model).applied_to(settings.roles.base)
    pool = LocalServerPool(settings.local)
    return build_role_model("base", spec, pool), pool
