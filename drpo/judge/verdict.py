"""The judge's verdict on one answer: a 1-5 score and a rationale per selected aspect.

Absolute scores grade the answer alone; relative ones (``reward.scoring: relative``) grade it against a
reference answer to the same query, 3 meaning "as good as the reference"."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from drpo.graph.state import AspectRecord, FailureRecord, unusable_output
from drpo.judge.expected import weigh_written
from drpo.llm.caller import RoleCaller, call_structured
from drpo.llm.structured import evaluation_schema, parse_evaluation
from drpo.prompts import EVALUATION, EVALUATION_ANCHORED, EVALUATION_RELATIVE, render
from drpo.prompts.texts import aspect_list_text, eval_skeleton, reply_rule
from drpo.scoring import reward_from_scores


@dataclass
class Verdict:
    """The judge's scores for one answer; ``reward`` is None when its output could not be used."""

    scores: dict[str, float]
    rationales: dict[str, str]
    reward: float | None
    attempts: int
    usage: dict[str, int]
    errors: list[str]
    written: dict[str, int] = field(default_factory=dict)  # the digits written, when scores are expected ones
    fallbacks: int = 0  # aspects whose expected score fell back to the written digit (no log-probabilities)


AS_GOOD_AS_REFERENCE = 3.0  # the relative scale's middle: "about as good as the reference"
WEIGHTED = {"expected", "relative"}  # scorings that weigh the written digit by its token probabilities


def same_as_reference(aspects: AspectRecord) -> Verdict:
    """An answer identical to its reference is as good as it, on every aspect, without asking the judge."""
    scores = dict.fromkeys(aspects["aspects"], AS_GOOD_AS_REFERENCE)
    rationales = dict.fromkeys(aspects["aspects"], "identical to the reference answer")
    return Verdict(scores, rationales, reward_from_scores(scores), attempts=0, usage={}, errors=[])


def judge_answer(
    caller: RoleCaller,
    query: str,
    answer: str,
    aspects: AspectRecord,
    *,
    retries: int,
    sample: int = 0,
    scoring: str = "absolute",
    rubric: str = "paper",
    reference: str | None = None,
    rationale: str = "first",
) -> Verdict:
    """Score ``answer`` on the query's selected aspects, re-asking when the judge's output is unusable.
    ``sample`` > 0 asks afresh after an earlier verdict stayed unusable (a new journal key and seed).
    With a ``reference`` answer the scores are relative to it (and ``rubric`` does not apply); ``relative``
    scoring without one (the initial prompt's own answers, ICL answers) grades absolutely, weighted.
    ``rationale`` ``none`` asks for the scores alone (shorter replies; rationales come back empty)."""
    values = {
        "query": query,
        "output": answer,
        "aspect_list": aspect_list_text(aspects["definitions"]),
        "aspect_reasoning": aspects["reasoning"] or "(no reasoning given)",
        "reply_rule": reply_rule(rationale),
    }
    if reference is None:
        template = EVALUATION_ANCHORED if rubric == "anchored" else EVALUATION
        prompt = render(template, **values, eval_skeleton=eval_skeleton(aspects["aspects"], rationale=rationale))
    elif reference.strip() == answer.strip():
        return same_as_reference(aspects)
    else:
        skeleton = eval_skeleton(aspects["aspects"], "of response B compared with A", rationale)
        prompt = render(EVALUATION_RELATIVE, **values, reference=reference, eval_skeleton=skeleton)
    outcome = call_structured(
        caller,
        prompt,
        lambda data: parse_evaluation(data, aspects["aspects"]),
        retries=retries,
        sample=sample,
        json_schema=evaluation_schema(aspects["aspects"], rationale),
        logprobs=scoring in WEIGHTED,
    )
    verdict = outcome.value or {}
    written = {aspect: entry["score"] for aspect, entry in verdict.items()}
    scores: dict[str, float] = dict(written)
    fallbacks = 0
    if scoring in WEIGHTED and outcome.value is not None:
        weighed, fallbacks = weigh_written(outcome.raw, written, outcome.alternatives)
        scores = {aspect: value for aspect, value in weighed.items() if value is not None}  # no N/A here
    return Verdict(
        written=written if scoring in WEIGHTED else {},
        fallbacks=fallbacks,
        scores=scores,
        rationales={aspect: entry["rationale"] for aspect, entry in verdict.items()},
        reward=reward_from_scores(scores) if outcome.value is not None else None,
        attempts=outcome.attempts,
        usage=outcome.usage,
        errors=outcome.errors,
    )


def judging(services: Any) -> dict[str, str]:
    """The run's judging options (``reward.scoring``, ``.rubric``, ``.rationale``) as judge_answer keywords."""
    reward = services.settings.reward
    return {"scoring": reward.scoring, "rubric": reward.rubric, "rationale": reward.rationale}


def evaluation_failure(depth: int, target: str, verdict: Verdict) -> FailureRecord:
    """The counted failure of a verdict that stayed unusable after every re-ask."""
    return unusable_output(depth, "evaluator", "unparseable_evaluation", target, verdict.attempts, verdict.errors)
