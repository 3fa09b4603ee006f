"""The end of make demo: drpo summary's plain lines, and the search progress with calls planned and time left."""

from __future__ import annotations

from pathlib import Path

from drpo.cli.common import calls_done
from drpo.cli.summary import summary_lines
from drpo.eval.plain import difference_sentence

RESULT = {
    "best_prompt": "You are a helpful assistant.",
    "best": {"candidate_id": "d1-0-0"},
    "depths_run": 2,
    "serving": {"icl_k": 1},
    "search": {"beam_width": 1, "num_actions": 2},
    "roles": {"base": {"provider": "local", "model": "qwen2.5-0.5b"}},
    "validation": {
        "note": "no proposal beat the initial prompt on 3 validation queries; the initial prompt is returned",
        "initial": 3.9,
        "best": 3.9,
        "beat_initial": False,
        "rewards": {"d1-0-0": 3.9, "d2-0-0": 3.85, "d2-0-1": None},
    },
}


def evaluation(low: float, high: float) -> dict:
    interval = {"mean": (low + high) / 2, "low": low, "high": high, "n": 8}
    return {
        "queries": {"evaluated": 8},
        "judge": "local:qwen2.5-0.5b",
        "baseline": "initial",
        "differences": {"optimized": {"Average": interval}},
        "truncated_answers": {"initial": 0, "optimized": 2},
    }


def test_the_summary_says_what_was_optimized_and_what_the_interval_means(tmp_path: Path) -> None:
    lines = summary_lines(RESULT, tmp_path / "run", evaluation(-0.1, 0.3), tmp_path / "eval")
    text = "\n".join(lines)
    assert "system prompt of the base model (local:qwen2.5-0.5b)" in text and "1 retrieved example" in text
    assert "no proposal beat the initial prompt on 3 validation queries" in text
    assert "both sides send the same requests" in text
    assert "returned prompt 3.90, best proposal 3.85" in text
    assert "No difference measured between optimized and initial" in text and "holds 0" in text
    assert "Answers cut at max_tokens (graded cut): {'optimized': 2}" in text
    assert lines[-2].endswith(str(tmp_path / "run" / "report.html"))
    assert lines[-1].endswith(str(tmp_path / "eval" / "report.html"))
    assert all(len(line) < 400 for line in lines)


def test_the_plain_sentence_follows_the_interval() -> None:
    gain = difference_sentence("optimized", "initial", {"mean": 0.4, "low": 0.1, "high": 0.7, "n": 8})
    loss = difference_sentence("optimized", "initial", {"mean": -0.4, "low": -0.7, "high": -0.1, "n": 8})
    assert "a gain" in gain and "above 0" in gain
    assert "a loss" in loss and "below 0" in loss
    none = difference_sentence("optimized", "initial", {"mean": None, "low": None, "high": None, "n": 0})
    assert "could be computed" in none


def test_progress_counts_calls_against_the_plan_and_estimates_the_time_left() -> None:
    event = {"fresh_calls": 10, "journal_hits": 0, "planned_calls": 40, "elapsed": 100.0}
    assert calls_done(event) == "calls 10/40, ~5 min left"  # 10 s a call, 30 calls to go
    assert calls_done({**event, "elapsed": 20.0}) == "calls 10/40, ~60 s left"
    assert calls_done({**event, "journal_hits": 30}) == "calls 40/40"
    assert calls_done({"fresh_calls": 3}) == "calls 3"  # no plan known
