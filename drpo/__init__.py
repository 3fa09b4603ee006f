"""drpo: align any LLM without fine-tuning (Dynamic Rewarding with Prompt Optimization on LangGraph)."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = [
    "AlignedChatModel",
    "Settings",
    "edit_run",
    "evaluate",
    "fork_run",
    "history",
    "load_settings",
    "optimize",
    "optimize_icl",
    "pending_review",
    "resume",
    "run_status",
    "__version__",
]


def __getattr__(name: str) -> Any:
    """Lazy public API, so ``import drpo`` stays cheap and free of import cycles."""
    if name in {"Settings", "load_settings"}:
        from drpo import settings

        return getattr(settings, name)
    if name in {"evaluate", "optimize", "optimize_icl", "resume"}:
        from drpo.run import driver

        return getattr(driver, name)
    if name in {"edit_run", "fork_run", "history", "pending_review", "run_status"}:
        from drpo.run import supervise

        return getattr(supervise, name)
    if name == "AlignedChatModel":
        from drpo.serve.aligned import AlignedChatModel

        return AlignedChatModel
    raise AttributeError(f"module 'drpo' has no attribute {name!r}")
