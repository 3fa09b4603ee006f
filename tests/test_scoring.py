from __future__ import annotations

import pytest

from drpo.graph.state import VerdictRecord
from drpo.scoring import path_value, rank_frontier, reward_from_scores, should_skip


def record(scores: dict[str, int] | None) -> VerdictRecord:
    return VerdictRecord(
        candidate="c",
        query="q",
        depth=1,
        answer_id="c|q",
        answer_preview="",
        scores=scores or {},
        rationales={},
        reward=reward_from_scores(scores) if scores else None,
        attempts=1,
    )


def test_reward_is_the_mean_score() -> None:
    assert reward_from_scores({"A": 4, "B": 5, "C": 3}) == pytest.approx(4.0)


@pytest.mark.parametrize(
    ("scores", "reason"),
    [
        (None, "evaluation failed"),
        ({"A": 5, "B": 5}, "all scores are 5"),
        ({"A": 5, "B": 5, "C": 4, "D": 5}, "mean score 4.75 > 4.5"),
        ({"A": 5, "B": 4}, None),  # exactly 4.5 is not above the threshold
        ({"A": 3, "B": 4}, None),
    ],
)
def test_skip_rule(scores: dict[str, int] | None, reason: str | None) -> None:
    assert should_skip([record(scores)], 4.5) == reason


def test_path_aggregators() -> None:
    assert path_value([3.0, 4.0, 5.0], "mean") == pytest.approx(4.0)
    assert path_value([3.0, 4.0, 5.0], "last") == 5.0
    assert path_value([3.0, None, 5.0], "mean") == pytest.approx(4.0)
    assert path_value([], "mean") is None


def test_ties_break_by_own_reward_then_frontier_order() -> None:
    frontier = ["a", "b", "c", "d", "e"]
    values = {"a": 4.0, "b": 4.0, "c": 4.5, "d": None, "e": 4.0}
    rewards = {"a": 3.0, "b": 4.0, "c": 4.0, "d": None, "e": 3.0}
    ranked = [entry["id"] for entry in rank_frontier(frontier, rewards, values)]
    assert ranked == ["c", "b", "a", "e", "d"]
    assert [entry["id"] for entry in rank_frontier(list(reversed(frontier)), rewards, values)] == [
        "c",
        "b",
        "e",
        "a",
        "d",
    ]
