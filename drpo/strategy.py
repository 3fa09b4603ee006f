"""Search strategies (the paper's Table 4): one graph, three rules for which nodes the optimizer expands,
how many candidates each depth keeps, and which prompt the search returns.

- ``beam`` (DRPO): keep the best W of each depth, expand each into M proposals.
- ``greedy``: beam search with W fixed at 1 (cheaper: M proposals per depth).
- ``mc`` (Monte Carlo): directionless one-step sampling: every depth samples as many proposals as beam
  search would (M, then W*M), all from the initial prompt and its evaluation; no beam is followed, and
  the best prompt sampled at any depth is returned. Equal cost to beam search by construction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from drpo.graph.state import ROOT_ID


@dataclass(frozen=True)
class Expansion:
    """One optimizer call site: the node to rewrite, its rank (child ids), and where its samples start."""

    candidate_id: str
    rank: int
    sample_offset: int = 0


class BeamStrategy:
    name = "beam"

    def width(self, beam_width: int) -> int:
        return beam_width

    def expansions(self, beam: list[str], depth: int, beam_width: int, num_actions: int) -> list[Expansion]:
        return [Expansion(candidate_id, rank) for rank, candidate_id in enumerate(beam)]

    def final_candidate(self, state: Mapping[str, Any]) -> str:
        return str(state["beam"][0])


class GreedyStrategy(BeamStrategy):
    name = "greedy"

    def width(self, beam_width: int) -> int:
        return 1


class MonteCarloStrategy(BeamStrategy):
    name = "mc"

    def expansions(self, beam: list[str], depth: int, beam_width: int, num_actions: int) -> list[Expansion]:
        """As many expansions as beam search makes at this depth, all of the initial prompt; each takes
        its own sample indices, so no two proposals of the whole search share a sampling seed."""
        first = (depth - 1) * beam_width * num_actions
        return [Expansion(ROOT_ID, rank, first + rank * num_actions) for rank in range(len(beam))]

    def final_candidate(self, state: Mapping[str, Any]) -> str:
        """The best prompt sampled at any depth (path value, then own reward; the earliest wins ties)."""
        entries = [entry for depth in sorted(state["beams"], key=int) for entry in state["beams"][depth]]
        scored = [entry for entry in entries if entry["path_value"] is not None]
        if not scored:
            return str(state["beam"][0])
        best = max(scored, key=lambda entry: (entry["path_value"], entry["reward"] or 0.0))
        return str(best["id"])


STRATEGIES: dict[str, BeamStrategy] = {
    strategy.name: strategy for strategy in (BeamStrategy(), GreedyStrategy(), MonteCarloStrategy())
}


def strategy_for(name: str) -> BeamStrategy:
    return STRATEGIES[name]
