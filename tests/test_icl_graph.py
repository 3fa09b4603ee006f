"""ICL-answer optimization (Algorithm 1) with a scripted model: keep-better, early stop, resume, collection."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

import drpo.graph.icl_graph as icl_graph
from drpo.nodes.icl_refine import rank_answers
from drpo.run.driver import optimize_icl, resume
from drpo.store.embeddings import Embedder
from drpo.store.icl_store import IclStore, icl_collection_name, open_chroma_client
from support.responder import respond, task_of
from support.runs import roles
from support.scripted import ScriptedChatModel


def icl_settings(make_settings, **icl: Any):
    settings = make_settings()
    return settings.model_copy(
        update={"icl_search": settings.icl_search.model_copy(update={"depth": 3, "num_actions": 2, **icl})}
    )


def test_keep_better_ranking_prefers_newer_on_ties() -> None:
    def answer(answer_id: str, reward: float | None) -> dict:
        return {"answer_id": answer_id, "reward": reward}

    ranked = rank_answers([answer("old", 4.0), answer("new1", 4.0), answer("new2", 3.0), answer("bad", None)])
    assert [a["answer_id"] for a in ranked] == ["new1", "old", "new2", "bad"]


def test_rewards_never_decrease_and_the_collection_is_written(make_settings, embedder: Embedder) -> None:
    settings = icl_settings(make_settings).model_copy(update={"run_id": "icl-a"})
    outcome = optimize_icl(settings, models=roles(ScriptedChatModel()), embedder=embedder)
    result = outcome.result
    assert result["kind"] == "icl" and len(result["examples"]) == 16
    for example in result["examples"]:
        best_so_far = example["history"][0]["reward"]
        assert example["final_reward"] >= best_so_far
        assert example["final_reward"] == max(a["reward"] for a in example["history"])
        if example["stop_reason"] == "maximum score":
            assert example["final_reward"] == 5.0
        else:
            assert example["rounds"] == 3 and len(example["history"]) == 1 + 3 * 2
    store = IclStore.open_existing(
        open_chroma_client(settings.resolved_store_dir() / "chroma"), icl_collection_name("icl-a"), embedder
    )
    stored = {item["id"]: item for item in store.metadata()}
    assert len(stored) == 16
    first = result["examples"][0]
    assert stored[first["id"]]["answer"] == first["answer"]
    assert json.loads(stored[first["id"]]["score_history"]) == [a["reward"] for a in first["history"]]
    assert stored[first["id"]]["source_run"] == "icl-a"


def perfect(text: str, sample: int) -> str:
    if task_of(text) == "evaluate":
        inner = json.loads(respond(text, sample).split("```json\n", 1)[1].split("\n```", 1)[0])
        return json.dumps({aspect: {"rationale": "perfect", "score": 5} for aspect in inner})
    return respond(text, sample)


def test_early_stop_at_the_maximum_score(make_settings, embedder: Embedder) -> None:
    model = ScriptedChatModel(responder=perfect)
    settings = icl_settings(make_settings).model_copy(update={"run_id": "icl-perfect"})
    result = optimize_icl(settings, models=roles(model), embedder=embedder).result
    assert all(e["stop_reason"] == "maximum score" and e["rounds"] == 0 for e in result["examples"])
    assert Counter(task_of(t) for t in model.finished)["rewrite"] == 0


def test_resume_after_a_crash_mid_round(make_settings, embedder: Embedder, monkeypatch: pytest.MonkeyPatch) -> None:
    reference_settings = icl_settings(make_settings).model_copy(update={"run_id": "icl-ref"})
    reference_model = ScriptedChatModel()
    reference = optimize_icl(
        reference_settings.model_copy(update={"store_dir": reference_settings.runs_dir / "ref-store"}),
        models=roles(reference_model),
        embedder=embedder,
    ).result
    first = ScriptedChatModel(fail_on=lambda text, count: count == 60)
    settings = icl_settings(make_settings).model_copy(update={"run_id": "icl-broken"})
    with pytest.raises(RuntimeError, match="injected"):
        optimize_icl(settings, models=roles(first), embedder=embedder)
    second = ScriptedChatModel()
    result = resume("icl-broken", settings.runs_dir, models=roles(second), embedder=embedder).result
    strip = lambda r: {k: v for k, v in r.items() if k not in {"run_id", "collection"}}  # noqa: E731
    assert strip(result) == strip(reference)
    assert Counter(first.finished) + Counter(second.finished) == Counter(reference_model.finished)
    nodes = set(icl_graph.compile_icl_graph().get_graph().nodes)
    assert {"icl_plan", "icl_refine", "write_icl_collection"} <= nodes


def test_prompt_optimization_retrieves_from_the_optimized_collection(make_settings, embedder: Embedder) -> None:
    from drpo.errors import DrpoInputError
    from drpo.run.driver import optimize

    settings = icl_settings(make_settings, depth=1, num_actions=1).model_copy(update={"run_id": "icl-src"})
    optimize_icl(settings, models=roles(ScriptedChatModel()), embedder=embedder)
    model = ScriptedChatModel()
    prompt_settings = make_settings(depth=2).model_copy(update={"run_id": "uses-icl", "icl_collection": "icl-src"})
    result = optimize(prompt_settings, models=roles(model), embedder=embedder).result
    assert result["serving"]["icl_collection"] == "drpo-icl-icl-src"
    base_requests = [t for t in model.finished if task_of(t) == "answer"]
    assert any("(v" in text for text in base_requests)  # a rewritten example answer was shown to the base model
    with pytest.raises(DrpoInputError, match="not found"):
        optimize(
            prompt_settings.model_copy(update={"run_id": "x", "icl_collection": "missing"}),
            models=roles(model),
            embedder=embedder,
        )
