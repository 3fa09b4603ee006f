from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from drpo.llm.caller import CallerDeps, CallStats, RoleCaller, call_structured
from drpo.llm.providers import build_role_model
from drpo.llm.structured import (
    AspectSelectionReply,
    OutputParseError,
    RejectedContent,
    TooLong,
    TransitionReply,
    evaluation_schema,
    extract_json_object,
    parse_aspect_selection,
    parse_evaluation,
    parse_first_valid,
    parse_score,
    parse_transition,
    reply_schema,
)
from drpo.settings import RoleSpec
from drpo.store.call_journal import CallJournal
from support.scripted import ScriptedChatModel


def test_extracts_json_from_fences_and_prose() -> None:
    assert extract_json_object('```json\n{"a": 1}\n```') == {"a": 1}
    assert extract_json_object('Sure! Here it is: {"a": {"b": 2}} hope it helps') == {"a": {"b": 2}}
    assert extract_json_object('noise { not json } then {"ok": true}') == {"ok": True}
    with pytest.raises(OutputParseError):
        extract_json_object("no json here")
    with pytest.raises(OutputParseError):
        extract_json_object("   ")


@pytest.mark.parametrize(("raw", "expected"), [(4, 4), ("4", 4), (" 5 ", 5), ("3/5", 3), (2.0, 2), ("1.0", 1)])
def test_scores_as_strings_or_numbers(raw: object, expected: int) -> None:
    assert parse_score(raw) == expected


@pytest.mark.parametrize("raw", [0, 6, "4.5", "good", None, True, 3.5])
def test_bad_scores_are_errors(raw: object) -> None:
    with pytest.raises(OutputParseError):
        parse_score(raw)


def test_aspect_names_are_normalized_and_deduplicated() -> None:
    parsed = parse_aspect_selection(
        {
            "aspects_selection": {
                "reasoning": "r",
                "selected_aspects": ["helpfulness", "critical thinking", "Helpfulness"],
            }
        }
    )
    assert parsed["aspects"] == ["Helpfulness", "Critical-Thinking"]
    assert parsed["new_aspects"] == []


def test_a_proposed_aspect_never_crashes() -> None:
    parsed = parse_aspect_selection(
        {
            "aspects_selection": {"selected_aspects": ["Clarity", "Humor", "Brevity of Code"]},
            "new_aspect_definitions": {"Humor": "The answer is funny where appropriate."},
        }
    )
    assert parsed["aspects"] == ["Clarity", "Humor", "Brevity of Code"]
    assert parsed["new_aspects"] == ["Humor", "Brevity of Code"]
    assert parsed["definitions"]["Humor"] == "The answer is funny where appropriate."
    assert parsed["definitions"]["Brevity of Code"]  # a generated definition, never a KeyError


def test_selection_size_is_enforced() -> None:
    with pytest.raises(OutputParseError, match="2 to 5"):
        parse_aspect_selection({"aspects_selection": {"selected_aspects": ["Clarity"]}})
    with pytest.raises(OutputParseError, match="2 to 5"):
        parse_aspect_selection(
            {
                "aspects_selection": {
                    "selected_aspects": ["Clarity", "Depth", "Safety", "Empathy", "Creativity", "Helpfulness"]
                }
            }
        )


def test_evaluation_needs_every_requested_aspect() -> None:
    verdict = parse_evaluation(
        {"helpfulness": {"rationale": "good", "score": "4"}, "Clarity": {"rationale": "ok", "score": 3}, "X": 1},
        ["Helpfulness", "Clarity"],
    )
    assert verdict == {"Helpfulness": {"score": 4, "rationale": "good"}, "Clarity": {"score": 3, "rationale": "ok"}}
    with pytest.raises(OutputParseError, match="Clarity"):
        parse_evaluation({"Helpfulness": {"score": 4}}, ["Helpfulness", "Clarity"])


def test_transition_turns_literal_newlines_into_real_ones() -> None:
    parsed = parse_transition({"new_system_prompt": "Be helpful.\\n- Be honest."})
    assert parsed["new_system_prompt"] == "Be helpful.\n- Be honest."
    with pytest.raises(OutputParseError):
        parse_transition({"analysis": "no prompt"})


def _caller(tmp_path: Path, model: ScriptedChatModel) -> RoleCaller:
    return RoleCaller(
        "evaluator",
        RoleSpec(),
        model,
        "custom:test",
        CallerDeps(
            journal=CallJournal.sqlite(tmp_path / "journal.sqlite"),
            limiter=threading.BoundedSemaphore(2),
            stats=CallStats(),
            seed=1,
        ),
        openai_style=False,
    )


def test_parse_failure_then_retry_with_the_error_fed_back(tmp_path: Path) -> None:
    replies = iter(["I think it is great!", '{"Helpfulness": {"rationale": "fine", "score": "5"}}'])
    model = ScriptedChatModel(responder=lambda text, sample: next(replies))
    outcome = call_structured(
        _caller(tmp_path, model), "## Task: evaluation", lambda d: parse_evaluation(d, ["Helpfulness"]), retries=2
    )
    assert outcome.value == {"Helpfulness": {"score": 5, "rationale": "fine"}}
    assert outcome.attempts == 2
    assert "no JSON object" in outcome.errors[0]
    assert "no JSON object" in model.calls[1]  # the validation error was fed back


def test_a_reply_cut_at_the_length_limit_is_unusable_where_it_must_be_whole(tmp_path: Path) -> None:
    reply = '{"new_system_prompt": "You are a helpful assistant. Tips: - Output Improvement S"}'  # repaired JSON
    for whole, attempts in ((False, 1), (True, 2)):
        model = ScriptedChatModel(
            responder=lambda text, sample: (
                reply if "cut off" not in text else '{"new_system_prompt": "You are a kind, careful assistant."}'
            ),
            finish_reason_of=lambda text, count: "length" if "cut off" not in text else "stop",
        )
        outcome = call_structured(
            _caller(tmp_path / str(whole), model), "## Task: write a prompt", parse_transition, retries=1, whole=whole
        )
        assert outcome.attempts == attempts
        if whole:
            assert outcome.value["new_system_prompt"] == "You are a kind, careful assistant."
            assert "incomplete" in outcome.errors[0] and "cut off" in outcome.errors[0]
        else:
            assert outcome.value["new_system_prompt"].endswith("Output Improvement S")  # judges keep a whole score


def test_refused_content_is_re_asked_afresh_without_showing_the_reply_back(tmp_path: Path) -> None:
    """Small models copy a refused reply they are shown, so a re-ask that echoes it gets it again."""
    replies = iter(['{"p": "again and again and again"}', '{"p": "Be brief and kind."}'])
    model = ScriptedChatModel(responder=lambda text, sample: next(replies))

    def parse(data: dict) -> str:
        if "again" in data["p"]:
            raise RejectedContent("it repeats itself")
        return data["p"]

    outcome = call_structured(_caller(tmp_path, model), "## Task: write a prompt", parse, retries=1)
    assert outcome.value == "Be brief and kind." and outcome.attempts == 2
    assert "again and again" not in model.calls[1] and "it repeats itself" in model.calls[1]
    assert "## Task: write a prompt" in model.calls[1] and model.calls[1].count("human:") == 1


def test_frequency_penalty_reaches_the_model_and_the_call_key(tmp_path: Path) -> None:
    spec = RoleSpec(provider="openai_compatible", base_url="http://127.0.0.1:9/v1", frequency_penalty=0.4)
    model = build_role_model("optimizer", spec, pool=None)  # type: ignore[arg-type]
    assert model.frequency_penalty == 0.4
    caller = _caller(tmp_path, ScriptedChatModel())
    plain, penalised = (
        caller.for_model(role_spec, ScriptedChatModel(), "custom:test", openai_style=False)
        for role_spec in (spec.model_copy(update={"frequency_penalty": 0.0}), spec)
    )
    assert plain.key_for("hi", None, 0) == caller.key_for("hi", None, 0)  # unset: keys of old journals hold
    assert plain.key_for("hi", None, 0) != penalised.key_for("hi", None, 0)


def test_retries_exhausted_gives_an_explicit_failure_not_a_zero(tmp_path: Path) -> None:
    model = ScriptedChatModel(responder=lambda text, sample: '{"Helpfulness": {"score": "excellent"}}')
    outcome = call_structured(
        _caller(tmp_path, model), "judge", lambda d: parse_evaluation(d, ["Helpfulness"]), retries=2
    )
    assert outcome.value is None
    assert outcome.attempts == 3
    assert len(outcome.errors) == 3 and "excellent" in outcome.errors[0]
    assert outcome.usage["calls"] == 3


def test_journal_answers_a_finished_call_without_calling_again(tmp_path: Path) -> None:
    model = ScriptedChatModel()
    caller = _caller(tmp_path, model)
    first = caller.complete("hello")
    again = caller.complete("hello")
    other_sample = caller.complete("hello", sample=1)
    assert again.text == first.text and again.from_journal and not first.from_journal
    assert not other_sample.from_journal
    assert len(model.calls) == 2


class _SlowJournal(CallJournal):
    """Records when each reply is stored, slowly, so a call started meanwhile would show."""

    def __init__(self, path: Path, events: list[str]) -> None:
        base = CallJournal.sqlite(path)
        super().__init__(base._calls, base._answers)
        self.events = events

    def put_call(self, key: str, record: dict) -> None:
        time.sleep(0.3)
        self.events.append(f"stored {record['text']}")
        super().put_call(key, record)


def test_a_reply_is_journaled_before_its_concurrency_slot_is_freed(tmp_path: Path) -> None:
    """kill -9 may repeat at most ``concurrency`` calls: none may start while a finished one is unstored."""
    events: list[str] = []

    def reply(text: str, sample: int) -> str:
        events.append(f"sent {text}")
        return text

    caller = RoleCaller(
        "evaluator",
        RoleSpec(),
        ScriptedChatModel(responder=reply),
        "custom:test",
        CallerDeps(
            journal=_SlowJournal(tmp_path / "journal.sqlite", events),
            limiter=threading.BoundedSemaphore(1),
            stats=CallStats(),
            seed=1,
        ),
        openai_style=False,
    )
    threads = [threading.Thread(target=caller.complete, args=(f"q{n}",)) for n in range(3)]
    for thread in threads:
        thread.start()
        time.sleep(0.05)
    for thread in threads:
        thread.join()
    kinds = [event.split()[0] for event in events]
    assert kinds == ["sent", "stored"] * 3, events


@pytest.mark.parametrize(
    "reply",
    [
        '{"Clarity": {"rationale": "ok", "score": 4},}',  # trailing comma
        "{'Clarity': {'rationale': 'ok', 'score': 4}}",  # Python-style quotes
        "{\u201cClarity\u201d: {\u201crationale\u201d: \u201cok\u201d, \u201cscore\u201d: 4}}",  # smart quotes
        '{\n  // the verdict\n  "Clarity": {"rationale": "ok", "score": 4}\n}',  # a // comment
    ],
)
def test_common_json_slips_are_repaired(reply: str) -> None:
    assert parse_first_valid(reply, lambda data: parse_evaluation(data, ["Clarity"])) == {
        "Clarity": {"score": 4, "rationale": "ok"}
    }


def test_a_format_example_before_the_answer_does_not_win() -> None:
    reply = (
        'Format: {"Clarity": {"rationale": "...", "score": "<1-5>"}}\n'
        'My verdict: {"Clarity": {"rationale": "clear steps", "score": 3}}'
    )
    assert parse_first_valid(reply, lambda data: parse_evaluation(data, ["Clarity"]))["Clarity"]["score"] == 3


def test_repair_never_guesses_what_is_missing() -> None:
    with pytest.raises(OutputParseError, match="missing scores"):
        parse_first_valid(
            '{"Clarity": {"rationale": "ok", "score": 4},}', lambda d: parse_evaluation(d, ["Clarity", "Depth"])
        )
    with pytest.raises(OutputParseError, match="1 to 5"):
        parse_first_valid("{'Clarity': {'rationale': 'ok', 'score': 9}}", lambda d: parse_evaluation(d, ["Clarity"]))


def test_reply_schemas_are_generated_from_the_reply_models() -> None:
    schema = reply_schema(TransitionReply)
    assert schema["required"] == ["analysis", "thought", "new_system_prompt"]
    assert schema["properties"]["new_system_prompt"] == {"maxLength": 1500, "minLength": 10, "type": "string"}
    selection = reply_schema(AspectSelectionReply)
    assert selection["properties"]["aspects_selection"]["properties"]["selected_aspects"]["maxItems"] == 5
    assert "$defs" not in json.dumps(selection) and "$ref" not in json.dumps(selection)
    entry = evaluation_schema(["Depth"])["properties"]["Depth"]
    assert entry["properties"]["score"] == {"maximum": 5, "minimum": 1, "type": "integer"}


def test_each_failed_attempt_records_its_failure_kind_by_type(tmp_path: Path) -> None:
    """Failure kinds come from the exception type, so rewording a message cannot change what is counted."""
    replies = iter(['{"p": "long"}', '{"p": "echo"}', "not json at all"])
    model = ScriptedChatModel(responder=lambda text, sample: next(replies))

    def parse(data: dict) -> str:
        if data["p"] == "long":
            raise TooLong("worded like anything")
        raise RejectedContent("worded like anything")

    outcome = call_structured(_caller(tmp_path, model), "## Task: write a prompt", parse, retries=2)
    assert outcome.value is None and outcome.error_kinds == ["too_long", "rejected", "unparseable"]


def test_a_proposal_is_counted_as_the_kind_all_its_attempts_failed_with() -> None:
    from drpo.nodes.transition import PROPOSAL_FAILURES

    assert PROPOSAL_FAILURES[frozenset({TooLong.kind})] == "prompt_too_long"
    assert PROPOSAL_FAILURES[frozenset({RejectedContent.kind})] == "unusable_prompt"
    assert frozenset({TooLong.kind, OutputParseError.kind}) not in PROPOSAL_FAILURES  # mixed: unparseable
