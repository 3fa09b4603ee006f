"""LangGraph builders for DRPO."""

from drpo.graph.prompt_graph import build_prompt_graph, compile_prompt_graph

__all__ = ["build_prompt_graph", "compile_prompt_graph"]
