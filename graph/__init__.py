"""LangGraph builders for DRPO: the prompt-optimization and ICL-optimization graphs."""

from __future__ import annotations

from typing import Any

__all__ = ["build_icl_graph", "build_prompt_graph", "compile_icl_graph", "compile_prompt_graph"]


def __getattr__(name: str) -> Any:
    """Lazy exports, so importing ``drpo.graph.state`` never pulls in the nodes (no import cycles)."""
    if name in {"build_prompt_graph", "compile_prompt_graph"}:
        from drpo.graph import prompt_graph

        return getattr(prompt_graph, name)
    if name in {"build_icl_graph", "compile_icl_graph"}:
        from drpo.graph import icl_graph

        return getattr(icl_graph, name)
    raise AttributeError(f"module 'drpo.graph' has no attribute {name!r}")
