"""Supervise an optimization from Python: stream progress, review the beam after every depth, decide.

    python examples/review_loop.py [--config examples/demo.yaml] [--runs-dir drpo_runs]

The run pauses after each depth's pruning. This script's reviewer prints the beam, adds a prompt of
its own at depth 2 and accepts otherwise; swap in your own policy or a UI. A paused run can also be
answered later, from another process, with ``drpo review RUN_ID`` or ``drpo.resume(..., decision=...)``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from drpo import load_settings, optimize, resume
from drpo.run.driver import RunOutcome

OWN_PROMPT = "You are a helpful, honest assistant. Say what you do not know, and refuse harmful requests."


def show_progress(event: dict[str, Any]) -> None:
    """Progress events come from the graph's custom stream (the same events SDK clients receive)."""
    if event.get("type") == "progress" and event["event"] == "depth_done":
        rewards = ", ".join("-" if reward is None else f"{reward:.2f}" for reward in event["rewards"])
        print(f"depth {event['depth']}: rewards [{rewards}], {event['tokens']} tokens so far")


def decide(review: dict[str, Any]) -> dict[str, Any]:
    """A reviewer policy: inspect the beam (prompts, rewards, per-aspect scores), return a decision."""
    for entry in review["beam"]:
        reward = "-" if entry["reward"] is None else f"{entry['reward']:.2f}"
        print(f"  #{entry['index']} {entry['id']} reward {reward}: {entry['prompt'][:80]!r}")
    if review["depth"] == 2:
        return {"action": "add", "prompt": OWN_PROMPT}
    return {"action": "accept"}


def supervise(settings: Any, models: dict[str, Any] | None = None) -> RunOutcome:
    outcome = optimize(settings, models=models, on_progress=show_progress)  # returns at the first review
    while outcome.status == "waiting-for-review":
        assert outcome.review is not None
        print(f"review after depth {outcome.review['depth']}:")
        outcome = resume(
            outcome.run_id,
            settings.runs_dir,
            models=models,
            decision=decide(outcome.review),
            on_progress=show_progress,
        )
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="examples/demo.yaml")
    parser.add_argument("--runs-dir", default="drpo_runs")
    args = parser.parse_args()
    settings = load_settings(Path(args.config), {"runs_dir": args.runs_dir, "search": {"review": True}})
    outcome = supervise(settings)
    assert outcome.result is not None
    print(f"best prompt of run {outcome.run_id}:\n{outcome.result['best_prompt']}")


if __name__ == "__main__":
    main()
