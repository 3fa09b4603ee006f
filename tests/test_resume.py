"""Resume after an exception at several points: same result, no finished call repeated."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

import drpo.graph.prompt_graph as prompt_graph
from drpo.store.embeddings import Embedder
from drpo.store.run_dir import RunDir
from support.responder import task_of
from support.runs import comparable, resume_run, roles, run
from support.scripted import ScriptedChatModel

SEARCH = {"depth": 4, "beam_width": 2, "num_actions": 3, "concurrency": 2}


@pytest.fixture
def unbroken(make_settings, embedder: Embedder) -> tuple[dict[str, Any], Counter[str]]:
    settings = make_settings(**SEARCH)
    model = ScriptedChatModel()
    result = run(
        settings.model_copy(update={"store_dir": settings.runs_dir / "ref-store"}), roles(model), embedder, "reference"
    ).result
    return comparable(result), Counter(model.finished)


def check_resumed(
    make_settings,
    embedder: Embedder,
    unbroken: tuple[dict[str, Any], Counter[str]],
    first: ScriptedChatModel,
    checkpointer: str,
) -> None:
    settings = make_settings(checkpointer, **SEARCH)
    status = RunDir(settings.runs_dir / "broken").read_status()["status"]
    assert status == "failed"
    second = ScriptedChatModel()
    result = resume_run(settings, roles(second), embedder, "broken").result
    reference, reference_calls = unbroken
    assert comparable(result) == reference
    assert Counter(first.finished) + Counter(second.finished) == reference_calls  # nothing finished ran twice


def fail_at_call(number: int) -> Callable[[str, int], bool]:
    return lambda text, count: count == number


@pytest.mark.parametrize("call_number", [5, 17, 30])
def test_exception_inside_a_send_branch(
    make_settings, embedder: Embedder, unbroken, call_number: int, checkpointer: str
) -> None:
    settings = make_settings(checkpointer, **SEARCH)
    first = ScriptedChatModel(fail_on=fail_at_call(call_number))
    with pytest.raises(RuntimeError, match="injected"):
        run(settings, roles(first), embedder, "broken")
    assert task_of(first.calls[call_number - 1]) in {"answer", "evaluate", "transition", "aspects"}
    check_resumed(make_settings, embedder, unbroken, first, checkpointer)


def raise_once_at_depth(node: Callable[..., Any], depth: int, after: bool) -> Callable[..., Any]:
    fired = {"done": False}

    def wrapper(state: Any, runtime: Any) -> Any:
        if not after and state["depth"] == depth and not fired["done"]:
            fired["done"] = True
            raise RuntimeError("injected before node")
        update = node(state, runtime)
        if after and state["depth"] == depth and not fired["done"]:
            fired["done"] = True
            raise RuntimeError("injected after node work")
        return update

    return wrapper


@pytest.mark.parametrize(("node_name", "after"), [("prune_beam", False), ("transition", True)])
def test_exception_in_prune_or_transition(
    make_settings,
    embedder: Embedder,
    unbroken,
    monkeypatch: pytest.MonkeyPatch,
    node_name: str,
    after: bool,
    checkpointer: str,
) -> None:
    settings = make_settings(checkpointer, **SEARCH)
    monkeypatch.setattr(prompt_graph, node_name, raise_once_at_depth(getattr(prompt_graph, node_name), 2, after))
    first = ScriptedChatModel()
    with pytest.raises(RuntimeError, match="injected"):
        run(settings, roles(first), embedder, "broken")
    check_resumed(make_settings, embedder, unbroken, first, checkpointer)


def test_resume_of_a_finished_run_returns_its_result(make_settings, embedder: Embedder) -> None:
    settings = make_settings(depth=2)
    done = run(settings, roles(ScriptedChatModel()), embedder, "finished").result
    model = ScriptedChatModel()
    assert resume_run(settings, roles(model), embedder, "finished").result == done
    assert model.calls == []
