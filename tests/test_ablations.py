"""The paper's ablations as settings (Tables 4 and 5): search strategies, static reward, guardrails."""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import pytest

from drpo.errors import SearchStalled
from drpo.graph.state import ROOT_ID
from drpo.run.driver import optimize, optimize_icl, resume
from drpo.run.opening import checkpoint_values
from drpo.run.plan import plan_run
from drpo.store.embeddings import Embedder
from drpo.store.run_dir import run_dir_for
from support.responder import digest, respond, task_of
from support.runs import comparable, roles
from support.scripted import ScriptedChatModel


def never_five(text: str, sample: int) -> str:
    """The scripted judge, but scores 1-4: no node is ever skipped, so costs can be compared exactly."""
    if task_of(text) == "evaluate":
        aspects = re.findall(r"^- ([A-Za-z-]+):", text.split("## Aspects to rate", 1)[1], re.MULTILINE)
        output = text.split("<output>", 1)[1].split("</output>", 1)[0]
        return json.dumps({a: {"rationale": "r", "score": 1 + digest(a, output) % 4} for a in aspects})
    return respond(text, sample)


def run_strategy(make_settings: Any, embedder: Embedder, strategy: str, run_id: str, **extra: Any) -> tuple[Any, Any]:
    settings = make_settings(depth=4, beam_width=2, num_actions=2, max_depth_increase=0, strategy=strategy, **extra)
    model = ScriptedChatModel(responder=never_five)
    outcome = optimize(settings.model_copy(update={"run_id": run_id}), models=roles(model), embedder=embedder)
    return outcome.result, model


def tasks(model: ScriptedChatModel) -> Counter[str]:
    return Counter(task_of(text) for text in model.finished)


def test_beam_greedy_and_mc_keep_what_they_should_at_the_cost_planned(make_settings, embedder: Embedder) -> None:
    beam, beam_model = run_strategy(make_settings, embedder, "beam", "beam")
    greedy, greedy_model = run_strategy(make_settings, embedder, "greedy", "greedy")
    mc, mc_model = run_strategy(make_settings, embedder, "mc", "mc")
    assert [len(d["beam"]) for d in beam["depths"]] == [1, 2, 2, 2]
    assert [len(d["beam"]) for d in greedy["depths"]] == [1, 1, 1, 1]
    sizes = {name: [len(d["candidates"]) for d in r["depths"]] for name, r in (("beam", beam), ("mc", mc))}
    assert sizes["beam"] == sizes["mc"] == [1, 2, 4, 4]  # equal numbers of sampled prompts
    assert [len(d["candidates"]) for d in greedy["depths"]] == [1, 2, 2, 2]
    assert tasks(beam_model)["transition"] == tasks(mc_model)["transition"] == 2 * (1 + 2 + 2)
    assert tasks(greedy_model)["transition"] == 2 * 3
    # Monte Carlo never follows a beam: every proposal is one step from the initial prompt, all distinct
    proposals = [c for d in mc["depths"][1:] for c in d["candidates"]]
    assert {c["parent"] for c in proposals} == {ROOT_ID}
    assert len({c["prompt"] for c in proposals}) == len(proposals)
    # ... and returns the best prompt sampled at any depth
    best = max(
        (c for d in mc["depths"] for c in d["candidates"] if c["path_value"] is not None),
        key=lambda c: (c["path_value"], c["reward"]),
    )
    assert mc["best"]["path_value"] == best["path_value"]
    for strategy, result in (("beam", beam), ("greedy", greedy), ("mc", mc)):
        planned = plan_run(make_settings(depth=4, beam_width=2, num_actions=2, max_depth_increase=0, strategy=strategy))
        optimizer_calls = result["usage"]["optimizer"]["calls"]
        assert planned["roles"]["optimizer"]["calls"] == optimizer_calls, strategy
        assert planned["sampled_prompts"][0] == sum(len(d["candidates"]) for d in result["depths"][1:]), strategy


def test_monte_carlo_resumes_after_a_crash_to_the_unbroken_result(make_settings, embedder: Embedder, tmp_path) -> None:
    reference, reference_model = run_strategy(make_settings, embedder, "mc", "mc-ref")
    settings = make_settings(depth=4, beam_width=2, num_actions=2, max_depth_increase=0, strategy="mc")
    settings = settings.model_copy(update={"store_dir": tmp_path / "own-store"})  # its own aspect cache
    broken = ScriptedChatModel(responder=never_five, fail_on=lambda text, count: count == 14)
    with pytest.raises(RuntimeError, match="injected"):
        optimize(settings.model_copy(update={"run_id": "mc-crash"}), models=roles(broken), embedder=embedder)
    second = ScriptedChatModel(responder=never_five)
    result = resume("mc-crash", settings.runs_dir, models=roles(second), embedder=embedder).result
    assert comparable(result) == comparable(reference)
    assert Counter(broken.finished) + Counter(second.finished) == Counter(reference_model.finished)


def test_static_reward_makes_no_selection_call_and_scores_every_aspect(make_settings, embedder: Embedder) -> None:
    settings = make_settings(depth=3).model_copy(update={"run_id": "static"})
    settings = settings.model_copy(update={"reward": settings.reward.model_copy(update={"mode": "static"})})
    model = ScriptedChatModel()
    result = optimize(settings, models=roles(model), embedder=embedder).result
    assert tasks(model)["aspects"] == 0 and "aspect_selector" not in result["usage"]
    static = ["Helpfulness", "Clarity", "Factuality", "Depth", "Engagement", "Safety"]
    verdicts = [v for d in result["depths"] for c in d["candidates"] for v in c["evaluations"]]
    assert verdicts and all(sorted(v["scores"]) == sorted(static) for v in verdicts)
    assert result["reward"]["mode"] == "static"
    assert plan_run(settings)["roles"]["aspect_selector"]["calls"] == 0


def test_static_reward_for_icl_optimization(make_settings, embedder: Embedder) -> None:
    settings = make_settings().model_copy(update={"run_id": "icl-static"})
    settings = settings.model_copy(
        update={
            "reward": settings.reward.model_copy(update={"icl_mode": "static"}),
            "icl_search": settings.icl_search.model_copy(update={"depth": 1}),
        }
    )
    model = ScriptedChatModel()
    result = optimize_icl(settings, models=roles(model), embedder=embedder).result
    assert tasks(model)["aspects"] == 0
    assert all(len(example["aspects"]) == 6 for example in result["examples"])


def test_overlong_proposals_are_re_asked_then_rejected_counted_and_stop_the_run(
    make_settings, embedder: Embedder
) -> None:
    with pytest.raises(SearchStalled, match=r"the optimizer .* gave no usable prompt .*under 8 tokens"):
        run_strategy(make_settings, embedder, "beam", "short", max_prompt_tokens=8)
    settings = make_settings()
    values = checkpoint_values(run_dir_for(settings.runs_dir, "short"))
    too_long = [f for f in values["failures"] if f["kind"] == "prompt_too_long"]
    assert len(too_long) == 2 and all(f["attempts"] == 3 and f["role"] == "optimizer" for f in too_long)
    assert [p["origin"] for p in values["proposals"]] == ["carried"]  # no over-long prompt entered the search
    status = json.loads(run_dir_for(settings.runs_dir, "short").status.read_text())
    assert status["status"] == "failed" and "optimizer" in status["error"]


def test_a_prompt_that_lowers_the_guarded_aspect_is_rejected(make_settings, embedder: Embedder) -> None:
    settings = make_settings(depth=3, beam_width=2, num_actions=2, max_depth_increase=0, no_regress="Safety")
    settings = settings.model_copy(
        update={"run_id": "guarded", "reward": settings.reward.model_copy(update={"mode": "static"})}
    )
    result = optimize(settings, models=roles(ScriptedChatModel(responder=never_five)), embedder=embedder).result
    regressed = {f["target"] for f in result["failures"] if f["kind"] == "regressed"}
    by_id = {c["id"]: c for d in result["depths"] for c in d["candidates"]}

    def safety(candidate_id: str) -> float:
        return sum(v["scores"]["Safety"] for v in by_id[candidate_id]["evaluations"]) / len(
            by_id[candidate_id]["evaluations"]
        )

    expected = {cid for cid, c in by_id.items() if c["origin"] == "optimizer" and safety(cid) < safety(c["parent"])}
    assert regressed == expected and expected  # the scripted judge lowers Safety somewhere
    for depth in result["depths"]:
        allowed = [c["id"] for c in depth["candidates"] if c["id"] not in regressed]
        if allowed:
            assert not set(depth["beam"]) & regressed
