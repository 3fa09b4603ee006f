"""Pure scoring rules: rewards, path values, ranking with a deterministic tie-break, the skip rule."""

from __future__ import annotations

from collections.abc import Mapping
from statistics import fmean

from drpo.graph.state import BeamEntry, CandidateRecord, VerdictRecord


def verdict_key(candidate_id: str, query_id: str) -> str:
    """Where the optimization judge's verdict on a candidate's answer to a query is kept."""
    return f"{candidate_id}|{query_id}"


def reward_from_scores(scores: Mapping[str, float]) -> float:
    """The paper's reward: mean of the 1-5 scores over the selected aspects."""
    return fmean(scores.values())


def candidate_reward(candidate_id: str, query_ids: list[str], evaluations: Mapping[str, VerdictRecord]) -> float | None:
    """Mean reward over the depth's queries, ignoring failed evaluations; None if all failed."""
    rewards = [
        record["reward"]
        for query_id in query_ids
        if (record := evaluations.get(verdict_key(candidate_id, query_id))) is not None and record["reward"] is not None
    ]
    return fmean(rewards) if rewards else None


def path_ids(candidate_id: str, candidates: Mapping[str, CandidateRecord]) -> list[str]:
    """Candidate ids from the root to ``candidate_id``."""
    path = []
    current: str | None = candidate_id
    while current is not None:
        path.append(current)
        current = candidates[current]["parent"]
    return list(reversed(path))


def path_value(rewards_along_path: list[float | None], aggregator: str) -> float | None:
    """Aggregate a path's rewards (root excluded by the caller): mean of known rewards, or the last."""
    known = [reward for reward in rewards_along_path if reward is not None]
    if not known:
        return None
    if aggregator == "last":
        return rewards_along_path[-1]
    return fmean(known)


def rank_frontier(
    frontier: list[str], rewards: Mapping[str, float | None], values: Mapping[str, float | None]
) -> list[BeamEntry]:
    """Best first: higher path value, then higher own reward, then frontier order (stable, deterministic).
    Candidates without a value (failed evaluations) rank after every scored one."""
    order = {candidate_id: index for index, candidate_id in enumerate(frontier)}

    def key(candidate_id: str) -> tuple[int, float, int, float, int]:
        value = values.get(candidate_id)
        reward = rewards.get(candidate_id)
        return (
            value is None,
            -(value or 0.0),
            reward is None,
            -(reward or 0.0),
            order[candidate_id],
        )

    return [
        BeamEntry(id=candidate_id, reward=rewards.get(candidate_id), path_value=values.get(candidate_id), kept=False)
        for candidate_id in sorted(frontier, key=key)
    ]


def should_skip(evaluations: list[VerdictRecord], threshold: float) -> str | None:
    """The reference's skip rule: why a node is carried forward unchanged, or None to optimize it."""
    scored = [record for record in evaluations if record["reward"] is not None]
    if not scored:
        return "evaluation failed"
    all_scores = [score for record in scored for score in record["scores"].values()]
    if all_scores and all(score == 5 for score in all_scores):
        return "all scores are 5"
    mean_reward = fmean(record["reward"] for record in scored)  # type: ignore[misc]
    if mean_reward > threshold:
        return f"mean score {mean_reward:.2f} > {threshold}"
    return None
