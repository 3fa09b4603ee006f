"""rationale: none: the judge is asked for scores alone, read as probability-weighted expected scores."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

import drpo.judge.grading as grading_module
import drpo.judge.verdict as verdict_module
from drpo.judge.grading import grade_answer
from drpo.judge.verdict import judge_answer
from drpo.llm.caller import StructuredOutcome
from drpo.llm.logprobs import digit_alternatives
from drpo.settings import settings_from_dict
from drpo.store.embeddings import Embedder
from support.responder import ASPECT_TASK, respond, task_of
from support.runs import roles, run
from support.scripted import ScriptedChatModel

ASPECTS = {"aspects": ["Helpfulness", "Clarity"], "definitions": {"Helpfulness": "h", "Clarity": "c"},
           "reasoning": "r", "new_aspects": [], "fallback": False}  # fmt: skip
SCORES_ONLY = '{"Helpfulness": {"score": 4}, "Clarity": {"score": 2}}'


def one_token_per_character(text: str, alternatives: dict[int, dict[str, float]]) -> list[dict[str, Any]]:
    return [
        {"token": char, "logprob": 0.0,
         "top_logprobs": [{"token": t, "logprob": lp} for t, lp in alternatives.get(offset, {char: 0.0}).items()]}
        for offset, char in enumerate(text)
    ]  # fmt: skip


def replying(reply: str, seen: dict[str, Any]) -> Any:
    """A call_structured stand-in: records the prompt and schema, replies with ``reply`` and its digits'
    log-probabilities (each written digit at 50%, the one below it at 50%)."""
    digits = {i: {c: math.log(0.5), str(int(c) - 1): math.log(0.5)} for i, c in enumerate(reply) if c in "2345"}

    def call(caller: object, prompt: str, parse: Any, **kwargs: Any) -> StructuredOutcome:
        seen.update(prompt=prompt, **kwargs)
        alternatives = digit_alternatives(reply, one_token_per_character(reply, digits))
        return StructuredOutcome(value=parse(json.loads(reply)), attempts=1, raw=reply, alternatives=alternatives)

    return call


def test_the_reward_judge_without_rationales_reads_expected_scores(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(verdict_module, "call_structured", replying(SCORES_ONLY, seen))
    verdict = judge_answer(object(), "q", "a", ASPECTS, retries=0, scoring="expected", rationale="none")  # type: ignore[arg-type]
    assert verdict.scores == {"Helpfulness": pytest.approx(3.5), "Clarity": pytest.approx(1.5)}
    assert verdict.written == {"Helpfulness": 4, "Clarity": 2} and verdict.fallbacks == 0
    assert verdict.rationales == {"Helpfulness": "", "Clarity": ""}
    assert '"rationale"' not in seen["prompt"] and "no rationale" in seen["prompt"]
    entry = seen["json_schema"]["properties"]["Helpfulness"]
    assert entry["required"] == ["score"] and set(entry["properties"]) == {"score"}
    # the default still asks for a rationale first
    monkeypatch.setattr(verdict_module, "call_structured", replying(SCORES_ONLY, seen))
    judge_answer(object(), "q", "a", ASPECTS, retries=0, scoring="expected")  # type: ignore[arg-type]
    assert '"rationale"' in seen["prompt"] and "Write the rationale first" in seen["prompt"]


def test_the_evaluation_grader_without_rationales_keeps_n_a(monkeypatch: pytest.MonkeyPatch) -> None:
    reply = json.dumps({name: {"score": "N/A" if name == "Factuality" else 3}
                        for name in grading_module.REGULAR_ASPECTS})  # fmt: skip
    seen: dict[str, Any] = {}
    monkeypatch.setattr(grading_module, "call_structured", replying(reply, seen))
    grade = grade_answer(object(), "q", "a", safety=False, retries=0, scoring="expected", rationale="none")  # type: ignore[arg-type]
    assert grade.ok and grade.scores["Factuality"] is None and grade.scores["Depth"] == pytest.approx(2.5)
    assert '"rationale"' not in seen["prompt"]
    factuality = seen["json_schema"]["properties"]["Factuality"]
    assert factuality["required"] == ["score"] and "anyOf" in factuality["properties"]["score"]


def test_a_search_with_rationale_none_asks_for_scores_alone(make_settings, embedder: Embedder) -> None:
    settings = make_settings(depth=2)
    settings = settings.model_copy(update={"reward": settings.reward.model_copy(update={"rationale": "none"})})
    model = ScriptedChatModel()
    result = run(settings, roles(model), embedder, "quiet").result
    judged = [text for text in model.finished if task_of(text) == "evaluate"]
    assert judged and all("no rationale" in text and '"rationale"' not in text for text in judged)
    assert result["reward"]["rationale"] == "none" and result["depths"][-1]["candidates"]


def test_an_unknown_rationale_setting_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(Exception, match="rationale"):
        settings_from_dict({"runs_dir": str(tmp_path), "reward": {"rationale": "later"}})


def test_known_only_aspects_are_held_to_the_list_by_the_schema_and_the_parser() -> None:
    from drpo.judge.aspects import selection_fingerprint, selection_schema, without_topics
    from drpo.llm.structured import OutputParseError
    from drpo.prompts import aspect_definitions

    items = selection_schema(True)["properties"]["aspects_selection"]["properties"]["selected_aspects"]["items"]
    assert items["enum"] == list(aspect_definitions()) and "enum" not in json.dumps(selection_schema(False))
    assert selection_fingerprint(True) != selection_fingerprint(False)  # cached selections are not mixed up
    reply = {"query_analysis": {}, "aspects_selection": {"reasoning": "r", "selected_aspects": ["Clarity", "Tact"]}}
    assert without_topics("q")(reply)["new_aspects"] == ["Tact"]
    with pytest.raises(OutputParseError, match="not on the list"):
        without_topics("q", known_only=True)(reply)


def test_a_run_with_new_aspects_off_counts_a_topic_selection_and_uses_the_list(make_settings, embedder) -> None:
    def topical(text: str, sample: int) -> str:
        if ASPECT_TASK in text:
            selection = {"reasoning": "r", "selected_aspects": ["Clarity", "Cooking"]}
            return json.dumps({"query_analysis": {}, "aspects_selection": selection})
        return respond(text, sample)

    settings = make_settings(depth=1)
    settings = settings.model_copy(update={"reward": settings.reward.model_copy(update={"new_aspects": False})})
    result = run(settings, roles(ScriptedChatModel(responder=topical)), embedder, "listed").result
    failures = [f for f in result["failures"] if f["role"] == "aspect_selector"]
    assert failures and "not on the list" in failures[0]["last_error"]
    assert all(record["fallback"] for record in result["aspects"].values())  # counted, then the list's defaults
