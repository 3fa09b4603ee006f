"""Probability-weighted judge scores from recorded log-probabilities, and the fallback without them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from drpo.judge.expected import expected_from, expected_scores, score_offset
from drpo.judge.verdict import judge_answer
from drpo.llm.logprobs import digit_alternatives
from drpo.store.embeddings import Embedder
from support.responder import task_of
from support.runs import roles, run
from support.scripted import ScriptedChatModel

REPLY = (
    '{"Helpfulness": {"rationale": "Good, \\"mostly\\" {ok}.", "score": 4}, "Clarity": {"rationale": "ok", "score": 2}}'
)


def tokens_of(text: str, alternatives: dict[int, dict[str, float]]) -> list[dict]:
    """An OpenAI logprobs.content list: one token per character, alternatives at chosen offsets."""
    content = []
    for offset, char in enumerate(text):
        options = alternatives.get(offset, {char: 0.0})
        content.append({"token": char, "logprob": options.get(char, 0.0),
                        "top_logprobs": [{"token": t, "logprob": lp} for t, lp in options.items()]})  # fmt: skip
    return content


def test_a_known_distribution_gives_a_known_expected_score() -> None:
    assert expected_from({"4": math.log(0.5), "5": math.log(0.25), "3": math.log(0.25)}) == pytest.approx(4.0)
    assert expected_from({"5": math.log(0.6), "4": math.log(0.2), " ": math.log(0.2)}) == pytest.approx(4.75)
    assert expected_from({'"2': math.log(0.5), " 3": math.log(0.5)}) == pytest.approx(2.5)  # quotes, spaces
    assert expected_from({"x": 0.0, "7": -1.0}) is None  # no score digit offered


def test_scores_are_found_per_aspect_in_the_reply() -> None:
    help_at, clarity_at = score_offset(REPLY, "Helpfulness"), score_offset(REPLY, "Clarity")
    assert REPLY[help_at] == "4" and REPLY[clarity_at] == "2"
    assert score_offset(REPLY, "Depth") is None
    content = tokens_of(REPLY, {help_at: {"4": math.log(0.5), "5": math.log(0.5)},
                                clarity_at: {"2": math.log(0.9), "1": math.log(0.1)}})  # fmt: skip
    alternatives = digit_alternatives(REPLY, content)
    assert [offset for offset, _ in alternatives] == [help_at, clarity_at]  # only digit tokens are kept
    scores = expected_scores(REPLY, ["Helpfulness", "Clarity", "Depth"], alternatives)
    assert scores == {"Helpfulness": pytest.approx(4.5), "Clarity": pytest.approx(1.9), "Depth": None}


def test_without_log_probabilities_the_written_digit_is_kept_and_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    import drpo.judge.verdict as verdict_module
    from drpo.llm.caller import StructuredOutcome

    aspects = {"aspects": ["Helpfulness", "Clarity"], "definitions": {"Helpfulness": "h", "Clarity": "c"},
               "reasoning": "r", "new_aspects": [], "fallback": False}  # fmt: skip

    def no_logprobs(caller: object, prompt: str, parse, **kwargs: object) -> StructuredOutcome:
        assert kwargs["logprobs"] is True  # asked for, but the server gave none
        return StructuredOutcome(value=parse(json.loads(REPLY)), attempts=1, raw=REPLY, alternatives=[])

    monkeypatch.setattr(verdict_module, "call_structured", no_logprobs)
    verdict = judge_answer(object(), "q", "a", aspects, retries=0, scoring="expected")  # type: ignore[arg-type]
    assert verdict.scores == {"Helpfulness": 4, "Clarity": 2} and verdict.fallbacks == 2
    assert verdict.written == {"Helpfulness": 4, "Clarity": 2} and verdict.reward == 3.0


def test_a_run_with_expected_scoring_records_written_digits_and_fallbacks(make_settings, embedder: Embedder) -> None:
    settings = make_settings(depth=2)
    settings = settings.model_copy(update={"reward": settings.reward.model_copy(update={"scoring": "expected"})})
    result = run(settings, roles(ScriptedChatModel()), embedder, "expected").result
    verdicts = [v for d in result["depths"] for c in d["candidates"] for v in c["evaluations"]]
    assert verdicts and all(v["written"] == v["scores"] for v in verdicts)  # a scripted model gives no logprobs
    assert all(v["expected_fallbacks"] == len(v["scores"]) for v in verdicts)


def test_the_anchored_rubric_reaches_the_judge(make_settings, embedder: Embedder) -> None:
    settings = make_settings(depth=1)
    settings = settings.model_copy(update={"reward": settings.reward.model_copy(update={"rubric": "anchored"})})
    model = ScriptedChatModel()
    run(settings, roles(model), embedder, "anchored")
    judged = [text for text in model.finished if task_of(text) == "evaluate"]
    assert judged and all("5: exceptional: nothing worth improving; rare" in text for text in judged)


def test_a_fence_the_server_stripped_and_a_split_character_do_not_lose_the_digits() -> None:
    """The embedded llama.cpp server's message drops the ```json fence its tokens still hold, and a character
    split over two tokens has no text of its own: offsets are found in bytes from where the reply starts."""
    reply = '{"Depth": {"rationale": "caf\u00e9 \u2014 fine", "score": 4}}'
    text = json.loads(json.dumps(reply))
    dash = "\u2014".encode()
    tokens = [("```", b"```"), ("json", b"json"), ("\n", b"\n")]
    before, after = text.split("\u2014")
    head, digit_and_rest = after.split("4", 1)
    tokens += [(before, before.encode()), ("", dash[:2]), ("\ufffd", dash[2:]), (head, head.encode())]
    tokens += [("4", b"4"), (digit_and_rest, digit_and_rest.encode()), ("", b"")]
    content = [{"token": token, "bytes": list(raw), "logprob": math.log(0.5),
                "top_logprobs": [{"token": token, "logprob": math.log(0.5)}, {"token": "3", "logprob": math.log(0.5)}]
                if token == "4" else []} for token, raw in tokens]  # fmt: skip
    alternatives = digit_alternatives(text, content)
    assert [offset for offset, _ in alternatives] == [text.index("4}")]
    assert expected_scores(text, ["Depth"], alternatives) == {"Depth": pytest.approx(3.5)}
    unrelated = [{"token": "nothing like it", "logprob": 0.0, "top_logprobs": []}]
    assert digit_alternatives(text, unrelated) == []  # no alignment: no alternatives (the digit then stands)


def test_digits_glued_to_json_punctuation_are_found() -> None:
    text = '{"Depth": {"rationale": "thin", "score":\n\n3}}'
    cut = text.index(":\n\n3")
    content = [
        {"token": text[:cut], "logprob": 0.0, "top_logprobs": []},
        {"token": ":\n\n3", "logprob": math.log(0.5), "top_logprobs": [{"token": ":\n\n3", "logprob": math.log(0.5)},
                                                                      {"token": ": 2", "logprob": math.log(0.5)}]},
        {"token": "}}", "logprob": 0.0, "top_logprobs": []},
    ]  # fmt: skip
    alternatives = digit_alternatives(text, content)
    assert [offset for offset, _ in alternatives] == [text.index("3")]
    assert expected_scores(text, ["Depth"], alternatives) == {"Depth": pytest.approx(2.5)}


@pytest.mark.parametrize("scoring", ["expected", "relative"])
def test_expected_scores_over_http_and_a_kill_9_resume_reach_the_unbroken_result(tmp_path: Path, scoring: str) -> None:
    """The OpenAI-style path end to end: log-probabilities asked for, kept in the journal, weighed; a run killed
    mid-way and resumed ends with the unbroken run's result (relative scores are weighed the same way)."""
    import os
    import signal
    import time

    import yaml

    from support.cli import drpo, drpo_background, fake_server_config
    from support.fake_openai import FakeOpenAIServer

    results = {}
    for name in ("unbroken", "killed"):
        work = tmp_path / name
        work.mkdir()
        log = work / "requests.jsonl"
        with FakeOpenAIServer(log_path=log, latency=0.02) as server:
            config = fake_server_config(work / "c.yaml", server.base_url, depth=3, max_depth_increase=0)
            data = yaml.safe_load(config.read_text())
            data["reward"] = {"scoring": scoring}
            config.write_text(yaml.safe_dump(data))
            command = ("optimize", "--config", str(config), "--run-id", "r", "--runs-dir", "runs")
            if name == "killed":
                process = drpo_background(*command, cwd=work)
                deadline = time.time() + 120
                while (not log.exists() or len(log.read_text().splitlines()) < 12) and time.time() < deadline:
                    time.sleep(0.01)
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
                command = ("resume", "r", "--runs-dir", "runs")
            done = drpo(*command, cwd=work)
            assert done.returncode == 0, done.stderr
        results[name] = json.loads((work / "runs" / "r" / "result.json").read_text())
    assert results["killed"] == results["unbroken"]
    verdicts = [v for d in results["unbroken"]["depths"] for c in d["candidates"] for v in c["evaluations"]]
    assert verdicts and all(v["expected_fallbacks"] == 0 for v in verdicts)
    expected = {1: 0.8 / 0.7, 5: 4.2 / 0.9}  # at the ends one neighbour is no score: renormalised over the rest
    for verdict in verdicts:  # the fake server's known distribution: d - 0.2 for 2-4
        for aspect, written in verdict["written"].items():
            assert verdict["scores"][aspect] == pytest.approx(expected.get(written, written - 0.2), abs=1e-3)
