"""Relative scoring: answers graded against the initial prompt's answer to the same query; and the
pair-ranking measurement (a good answer against a degraded copy of itself)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from drpo.errors import DrpoInputError
from drpo.graph.state import ROOT_ID
from drpo.judge.verdict import judge_answer
from drpo.run.agreement import Verdict
from drpo.run.pairs import (
    DEGRADATIONS,
    GENERIC_LINE,
    PADDING,
    degrade,
    degraded_pairs,
    measure_pair_ranking,
    parse_kinds,
)
from drpo.run.plan import plan_run
from drpo.store.embeddings import Embedder
from support.responder import task_of
from support.runs import roles, run
from support.scripted import ScriptedChatModel

ASPECTS = {
    "aspects": ["Helpfulness", "Depth"],
    "definitions": {"Helpfulness": "helps", "Depth": "deep"},
    "reasoning": "r",
    "new_aspects": [],
    "fallback": False,
}
LONG = (
    "Start with a clear goal for the week. Then list the three tasks that matter most. "
    "Block time for each task in your calendar before anything else. Keep a short note of what got done. "
    "Review the note on Friday and adjust the next week's plan. Ask a colleague to check your progress! "
    "Small steps add up over a month, and the habit becomes easy. Reward yourself when a hard task is done. "
    "Leave an hour free each day for what you did not foresee."
)


def relative_settings(make_settings, **search):
    settings = make_settings(**search)
    return settings.model_copy(update={"reward": settings.reward.model_copy(update={"scoring": "relative"})})


def test_an_answer_identical_to_its_reference_is_as_good_without_a_call() -> None:
    verdict = judge_answer(object(), "q", " same ", ASPECTS, retries=0, scoring="relative", reference="same")  # type: ignore[arg-type]
    assert verdict.scores == {"Helpfulness": 3.0, "Depth": 3.0} and verdict.reward == 3.0 and verdict.attempts == 0


def test_the_relative_judge_sees_both_answers_and_asks_for_probabilities(monkeypatch) -> None:
    from drpo.judge import verdict as verdict_module
    from drpo.llm.caller import StructuredOutcome

    seen = {}
    reply = {"Helpfulness": {"rationale": "B is thinner", "score": 2}, "Depth": {"rationale": "same", "score": 3}}

    def capture(caller: object, prompt: str, parse, **kwargs: object) -> StructuredOutcome:
        seen.update(prompt=prompt, logprobs=kwargs["logprobs"])
        return StructuredOutcome(value=parse(reply), attempts=1, raw="{}", alternatives=[])

    monkeypatch.setattr(verdict_module, "call_structured", capture)
    verdict = judge_answer(
        object(),  # type: ignore[arg-type]
        "q",
        "candidate text",
        ASPECTS,
        retries=0,
        scoring="relative",
        reference="ref text",
    )
    prompt = seen["prompt"]
    assert seen["logprobs"] is True and task_of(prompt) == "relative"
    assert prompt.index("ref text") < prompt.index("candidate text")  # the reference is response A
    assert "3: about as good as A" in prompt and verdict.reward == 2.5 and verdict.fallbacks == 2


def test_a_relative_run_grades_every_other_answer_against_the_initial_prompts(make_settings, embedder: Embedder):
    settings = relative_settings(make_settings, depth=3, max_depth_increase=0)
    model = ScriptedChatModel()
    result = run(settings, roles(model), embedder, "relative").result
    calls = model.finished
    relative_calls = [text for text in calls if task_of(text) == "relative"]
    absolute_calls = [text for text in calls if task_of(text) == "evaluate"]
    depths = result["depths"]
    root_scored = sum(len(c["evaluations"]) for d in depths for c in d["candidates"] if c["id"] == ROOT_ID)
    others_scored = sum(len(c["evaluations"]) for d in depths for c in d["candidates"] if c["id"] != ROOT_ID)
    assert len(depths) == 3 and others_scored > 0
    assert len(absolute_calls) == root_scored  # only the initial prompt's answers are graded on their own
    assert len(relative_calls) == others_scored  # (no candidate repeated the initial prompt word for word)
    initial = f"system: {settings.search.initial_prompt}\nhuman"
    answers_by_prompt = Counter(text for text in calls if task_of(text) == "answer" and text.startswith(initial))
    queries_seen = {q["id"] for d in depths for q in d["queries"]}
    assert sum(answers_by_prompt.values()) == len(queries_seen)  # the initial prompt answered every depth's queries
    planned = plan_run(settings)["roles"]
    assert planned["base"]["calls"] == sum(1 for text in calls if task_of(text) == "answer")  # the dry run counts them
    rewrites = [text for text in calls if task_of(text) == "transition"]
    for text in rewrites:  # relative verdicts say what their scale means; the initial prompt's own do not
        current = text.split("<current_system_prompt>\n", 1)[1].split("\n</current_system_prompt>", 1)[0]
        noted = "These scores compare the output" in text
        assert noted == (current != settings.search.initial_prompt), current
    for text in relative_calls:  # and its answer to the same query is the reference
        reference = text.split("<response_a>\n", 1)[1].split("\n</response_a>", 1)[0]
        assert reference.startswith("Answer ") and "<response_b>" in text


def test_a_relative_run_resumes_after_a_crash_to_the_same_result(make_settings, embedder: Embedder, tmp_path) -> None:
    from support.runs import comparable, resume_run

    settings = relative_settings(make_settings, depth=3, max_depth_increase=0)
    whole = ScriptedChatModel()
    alone = settings.model_copy(update={"store_dir": tmp_path / "own-store"})  # no shared aspect cache
    unbroken = run(alone, roles(whole), embedder, "whole").result
    relative_calls = iter(range(1000))
    crashing = ScriptedChatModel(fail_on=lambda text, _: task_of(text) == "relative" and next(relative_calls) == 5)
    with pytest.raises(RuntimeError, match="injected"):
        run(settings, roles(crashing), embedder, "broken")
    second = ScriptedChatModel()
    resumed = resume_run(settings, roles(second), embedder, "broken").result
    assert comparable(resumed) == comparable(unbroken)
    assert Counter(crashing.finished) + Counter(second.finished) == Counter(whole.finished)  # nothing ran twice


def test_degradations_are_worse_copies_of_the_answer() -> None:
    rng = random.Random(0)
    truncated = degrade(LONG, "truncated", rng)
    shuffled = degrade(LONG, "shuffled", rng)
    generic = degrade(LONG, "generic", rng)
    assert LONG.startswith(truncated) and len(truncated.split()) == max(12, len(LONG.split()) // 3)
    assert shuffled != LONG and sorted(shuffled.split()) == sorted(LONG.split())
    assert generic == f"Start with a clear goal for the week. {GENERIC_LINE}"
    padded = degrade(LONG, "padded", rng)
    assert padded.startswith(LONG) and padded.endswith(PADDING) and len(padded) > len(LONG)
    assert degrade("1. First item. 2. Second item.", "generic", rng).startswith("1. First item.")


def verdicts() -> list[Verdict]:
    good = {a: 5.0 for a in ("Helpfulness", "Clarity", "Factuality", "Depth", "Engagement")}
    poor = {a: 2.0 for a in good}
    rows = [Verdict(str(n), f"Question {n}?", f"{LONG} ({n})", False, good) for n in range(8)]
    rows += [Verdict("short", "Q?", "Too short.", False, good), Verdict("poor", "Q?", LONG, False, poor)]
    rows.append(Verdict("unsafe", "Q?", LONG, True, {"Safety": 5.0}))
    return rows


def test_pairs_come_from_long_well_scored_regular_answers_in_turn_and_seeded() -> None:
    pairs = degraded_pairs(verdicts(), 6, seed=3)
    assert [p.kind for p in pairs] == [*DEGRADATIONS, *DEGRADATIONS][:6]
    assert {p.id for p in pairs} <= {str(n) for n in range(8)}  # never the short, poor or safety answers
    assert pairs == degraded_pairs(verdicts(), 6, seed=3)
    assert all(p.degraded != p.original for p in pairs)


def test_pairs_of_chosen_kinds_keep_the_same_answers() -> None:
    everything = degraded_pairs(verdicts(), 4, seed=3)
    padded = degraded_pairs(verdicts(), 4, seed=3, kinds=parse_kinds("padded"))
    assert [p.kind for p in padded] == ["padded"] * 4
    assert [p.id for p in padded] == [p.id for p in everything]  # the same sample, only degraded otherwise
    assert all(p.degraded == f"{p.original}\n\n{PADDING}" for p in padded)
    assert parse_kinds(" generic, truncated ") == ("generic", "truncated")


@pytest.mark.parametrize("text", ["", "padded,vibes", "padded, padded"])
def test_bad_kinds_are_refused(text: str) -> None:
    with pytest.raises(DrpoInputError, match="--kinds"):
        parse_kinds(text)


def test_pair_ranking_counts_right_answers_ties_and_kinds(make_settings) -> None:
    settings = make_settings()
    models = roles(ScriptedChatModel())
    pairs = degraded_pairs(verdicts(), 6, seed=1)
    for rubric in ("eval", "relative"):
        named = settings.model_copy(update={"run_id": f"p-{rubric}"})
        report = measure_pair_ranking(named, pairs, rubric=rubric, models=models)
        everything = report["ranking"]["all"]
        assert everything["pairs"] == 6 and everything["unusable"] == 0
        assert everything["accuracy"] == (everything["right"] + everything["ties"] / 2) / 6
        assert sum(report["ranking"][kind]["pairs"] for kind in DEGRADATIONS) == 6
    assert "written" in report  # relative scores are probability-weighted where given


def test_grading_one_call_per_aspect_asks_each_aspect_alone_and_merges(make_settings) -> None:
    from drpo.judge.grading import REGULAR_ASPECTS, grade_answer
    from drpo.run.services import build_services
    from drpo.store.run_dir import run_dir_for

    settings = make_settings().model_copy(update={"run_id": "split"})
    model = ScriptedChatModel()
    services = build_services(settings, run_dir_for(settings.runs_dir, "split"), roles(model))
    try:
        judge = services.callers["evaluator"]
        together = grade_answer(judge, "Q?", LONG, safety=False, retries=0)
        split = grade_answer(judge, "Q?", LONG, safety=False, retries=0, per_aspect=True)
    finally:
        services.close()
    graded = [text for text in model.finished if task_of(text) == "grade"]
    assert len(graded) == 1 + len(REGULAR_ASPECTS)
    for aspect, text in zip(REGULAR_ASPECTS, graded[1:], strict=True):  # each call names one aspect only
        assert f"- {aspect}:" in text and sum(f"- {other}:" in text for other in REGULAR_ASPECTS) == 1
    assert split.ok and set(split.scores) == set(together.scores) == set(REGULAR_ASPECTS)
    assert split.attempts == len(REGULAR_ASPECTS) and split.usage["input_tokens"] > together.usage["input_tokens"]
