"""The house rules of the layout: dependencies point one way and nobody imports another module's private names."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Package of each folder; lower layers must not import higher ones (cli -> run -> graph -> nodes -> the rest).
LAYER = {"cli": 4, "run": 3, "serve": 3, "graph": 2, "nodes": 1}  # the rest (llm, judge, eval, store) are leaves
# Schema modules every layer may read (the state, the run context, the review contract, progress events).
# The formatter is the one input builder for optimization and serving alike (so what is optimized is what runs).
SHARED = {"drpo.graph.state", "drpo.graph.context", "drpo.graph.review", "drpo.graph.progress", "drpo.serve.formatter"}


def _modules() -> list[tuple[str, Path]]:
    found = []
    for folder, package in (
        ("drpo", "drpo"),
        ("graph", "drpo.graph"),
        ("nodes", "drpo.nodes"),
        ("store", "drpo.store"),
    ):
        for path in (ROOT / folder).rglob("*.py"):
            relative = path.relative_to(ROOT / folder).with_suffix("")
            found.append((".".join([package, *relative.parts]).removesuffix(".__init__"), path))
    return found


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYER.get(parts[1], 0) if len(parts) > 1 else 0


def _imports(path: Path) -> list[ast.ImportFrom]:
    return [node for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.ImportFrom) and node.module]


def test_dependencies_point_one_way() -> None:
    wrong = []
    for module, path in _modules():
        if module in ("drpo", "drpo.graph.server"):  # the public API, and the LangGraph Server entry point
            continue
        for node in _imports(path):
            target = node.module or ""
            if target.startswith("drpo.") and target not in SHARED and _layer(target) > _layer(module):
                wrong.append(f"{module} imports {target}")
    assert not wrong, wrong


def test_no_module_imports_another_modules_private_names() -> None:
    private = [
        f"{module} imports {alias.name} from {node.module}"
        for module, path in _modules()
        for node in _imports(path)
        if (node.module or "").startswith("drpo")
        for alias in node.names
        if alias.name.startswith("_")
    ]
    assert not private, private
