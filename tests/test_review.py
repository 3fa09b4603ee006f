"""Human review between depths, edits through update_state, forks, history, status and the run lock."""

from __future__ import annotations

from typing import Any

import pytest

from drpo.errors import DrpoInputError
from drpo.run.driver import optimize, resume
from drpo.run.supervise import edit_run, fork_run, history, pending_review, run_status
from drpo.store.embeddings import Embedder
from drpo.store.run_lock import run_lock_for
from support.runs import roles, run
from support.scripted import ScriptedChatModel

HUMAN_PROMPT = "You are a careful assistant written by a human reviewer. Answer precisely."


def start_reviewed(make_settings, embedder: Embedder, run_id: str, checkpointer: str = "sqlite", **search: Any):
    settings = make_settings(checkpointer, review=True, **search).model_copy(update={"run_id": run_id})
    model = ScriptedChatModel()
    outcome = optimize(settings, models=roles(model), embedder=embedder)
    return settings, model, outcome


def test_a_reviewed_run_waits_after_each_depth_and_continues_with_decisions(
    make_settings, embedder, checkpointer
) -> None:
    settings, model, outcome = start_reviewed(
        make_settings, embedder, "rev", checkpointer, depth=3, max_depth_increase=0
    )
    assert outcome.status == "waiting-for-review" and outcome.result is None
    review = outcome.review
    assert review["depth"] == 1 and [entry["id"] for entry in review["beam"]] == ["d1-0-0"]
    assert review["beam"][0]["evaluations"][0]["rationales"]
    assert review["queries"][0]["text"]
    assert run_status("rev", settings.runs_dir)["status"] == "waiting-for-review"
    calls_before = len(model.finished)

    again = resume("rev", settings.runs_dir, models=roles(model), embedder=embedder)
    assert again.status == "waiting-for-review" and len(model.finished) == calls_before  # nothing re-ran

    second = resume("rev", settings.runs_dir, models=roles(model), embedder=embedder, decision={"action": "accept"})
    assert second.review["depth"] == 2 and len(second.review["beam"]) == 2
    edited_from = second.review["beam"][1]["id"]
    third = resume(
        "rev",
        settings.runs_dir,
        models=roles(model),
        embedder=embedder,
        decision=[{"action": "edit", "index": 1, "prompt": HUMAN_PROMPT}, {"action": "add", "prompt": "Be brief."}],
    )
    done = third  # depth 3 is the last: the search ends without another review
    result = done.result
    assert done.status == "done"
    depth3 = result["depths"][2]["candidates"]
    human = sorted((c for c in depth3 if c["origin"] == "human"), key=lambda c: c["id"])
    assert [(c["id"], c["prompt"]) for c in human] == [("d3-h-0", HUMAN_PROMPT), ("d3-h-1", "Be brief.")]
    assert human[0]["parent"] == edited_from and human[1]["parent"] == "d1-0-0"
    assert all(c["reward"] is not None and c["evaluations"] for c in human)  # scored before competing
    assert not any(c["parent"] == edited_from and c["origin"] == "optimizer" for c in depth3)  # replaced, not optimized
    assert result["reviews"]["2"]["decisions"][0] == {"action": "edit", "index": 1, "prompt": HUMAN_PROMPT}
    assert run_status("rev", settings.runs_dir)["status"] == "done"


def test_stop_finalizes_with_the_current_best(make_settings, embedder, checkpointer) -> None:
    settings, model, _ = start_reviewed(make_settings, embedder, "stop", checkpointer, depth=5)
    done = resume("stop", settings.runs_dir, models=roles(model), embedder=embedder, decision={"action": "stop"})
    assert done.result["stop_reason"] == "stopped by reviewer"
    assert done.result["depths_run"] == 1 and done.result["best"]["candidate_id"] == "d1-0-0"


@pytest.mark.parametrize(
    ("decision", "message"),
    [
        ({"action": "edit", "index": 4, "prompt": "x"}, "out of range"),
        ({"action": "edit", "index": 0, "prompt": "  "}, "non-empty prompt"),
        ({"action": "drop", "index": 0}, "cannot drop every candidate"),
        ({"action": "promote"}, "invalid review decision"),
    ],
)
def test_bad_decisions_are_refused_and_the_run_is_unchanged(
    make_settings, embedder, decision, message, checkpointer
) -> None:
    settings, model, _ = start_reviewed(make_settings, embedder, "bad", checkpointer)
    before = (settings.runs_dir / "bad" / "status.json").read_text()
    with pytest.raises(DrpoInputError, match=message):
        resume("bad", settings.runs_dir, models=roles(model), embedder=embedder, decision=decision)
    assert (settings.runs_dir / "bad" / "status.json").read_text() == before
    assert pending_review("bad", settings.runs_dir)["depth"] == 1


def test_a_decision_for_a_run_that_is_not_waiting_is_refused(make_settings, embedder, checkpointer) -> None:
    settings = make_settings(checkpointer, depth=2)
    run(settings, roles(ScriptedChatModel()), embedder, "plain")
    with pytest.raises(DrpoInputError, match="not waiting for a review"):
        resume("plain", settings.runs_dir, models=roles(ScriptedChatModel()), decision={"action": "accept"})
    with pytest.raises(DrpoInputError, match="not waiting"):
        pending_review("plain", settings.runs_dir)
    with pytest.raises(DrpoInputError, match="unknown run"):
        pending_review("nope", settings.runs_dir)


def test_accepting_every_review_inline_equals_an_unreviewed_run(make_settings, embedder, checkpointer) -> None:
    plain = run(make_settings(checkpointer, depth=3), roles(ScriptedChatModel()), embedder, "unreviewed").result
    seen: list[int] = []

    def accept(review: dict[str, Any]) -> dict[str, str]:
        seen.append(review["depth"])
        return {"action": "accept"}

    settings = make_settings(checkpointer, depth=3, review=True).model_copy(update={"run_id": "inline"})
    reviewed = optimize(settings, models=roles(ScriptedChatModel()), embedder=embedder, on_review=accept).result
    assert seen == [1, 2]  # the last depth ends the search without a review
    assert reviewed["depths"] == plain["depths"] and reviewed["best_prompt"] == plain["best_prompt"]


def test_an_invalid_inline_decision_is_asked_again_with_the_error(make_settings, embedder, checkpointer) -> None:
    answers = iter([{"action": "drop", "index": 7}, {"action": "accept"}, {"action": "accept"}])
    errors: list[str | None] = []

    def reviewer(review: dict[str, Any]) -> dict[str, Any]:
        errors.append(review.get("error"))
        return next(answers)

    settings = make_settings(checkpointer, depth=3, review=True).model_copy(update={"run_id": "again"})
    outcome = optimize(settings, models=roles(ScriptedChatModel()), embedder=embedder, on_review=reviewer)
    assert outcome.status == "done"
    assert errors[0] is None and "out of range" in errors[1]


def test_edit_outside_a_review_lands_through_update_state(make_settings, embedder, checkpointer) -> None:
    settings, model, _ = start_reviewed(make_settings, embedder, "edit", checkpointer, depth=4, max_depth_increase=0)
    resume("edit", settings.runs_dir, models=roles(model), embedder=embedder, decision={"action": "accept"})
    changed = edit_run("edit", settings.runs_dir, {"action": "edit", "index": 0, "prompt": HUMAN_PROMPT})
    assert changed["added"] == ["d3-h-0"] and len(changed["beam"]) == 1
    review = pending_review("edit", settings.runs_dir)
    assert [entry["prompt"] for entry in review["pending_human_prompts"]] == [HUMAN_PROMPT]
    assert len(review["beam"]) == 1
    done = resume("edit", settings.runs_dir, models=roles(model), embedder=embedder, decision={"action": "accept"})
    done = resume("edit", settings.runs_dir, models=roles(model), embedder=embedder, decision={"action": "accept"})
    human = [c for c in done.result["depths"][2]["candidates"] if c["origin"] == "human"]
    assert [c["prompt"] for c in human] == [HUMAN_PROMPT] and human[0]["reward"] is not None
    with pytest.raises(DrpoInputError, match="not paused at a review point"):
        edit_run("edit", settings.runs_dir, {"action": "add", "prompt": "x"})


def test_history_and_fork_leave_the_original_intact(make_settings, embedder, checkpointer) -> None:
    settings = make_settings(checkpointer, depth=4, max_depth_increase=0)
    original = run(settings, roles(ScriptedChatModel()), embedder, "orig").result
    rows = history("orig", settings.runs_dir)
    assert [row["depth"] for row in rows] == [1, 2, 3, 4]
    assert [[entry["id"] for entry in row["beam"]] for row in rows] == [d["beam"] for d in original["depths"]]
    model = ScriptedChatModel()
    forked = fork_run(
        "orig",
        settings.runs_dir,
        2,
        decisions={"action": "add", "prompt": HUMAN_PROMPT},
        new_run_id="orig-fork",
        models=roles(model),
        embedder=embedder,
    )
    fork_result = forked.result
    assert fork_result["depths"][:2] == original["depths"][:2]
    assert HUMAN_PROMPT in [c["prompt"] for c in fork_result["depths"][2]["candidates"]]
    assert (settings.runs_dir / "orig" / "result.json").read_text().count(HUMAN_PROMPT) == 0
    assert [row["checkpoint_id"] for row in history("orig", settings.runs_dir)] == [r["checkpoint_id"] for r in rows]
    assert fork_result["usage_by_depth"]["1"] == original["usage_by_depth"]["1"]
    plain_fork = fork_run("orig", settings.runs_dir, 2, new_run_id="same", models=roles(ScriptedChatModel()))
    assert plain_fork.result["depths"] == original["depths"]  # an unedited fork replays to the same result
    with pytest.raises(DrpoInputError, match="no finished depth 9"):
        fork_run("orig", settings.runs_dir, 9)
    with pytest.raises(DrpoInputError, match="already exists"):
        fork_run("orig", settings.runs_dir, 1, new_run_id="same")


def test_a_second_driver_of_the_same_run_is_refused(make_settings, embedder, checkpointer) -> None:
    settings, model, _ = start_reviewed(make_settings, embedder, "locked", checkpointer)
    lock = run_lock_for(checkpointer, settings.runs_dir / "locked" / "run.lock", "locked")
    assert lock.acquire()
    try:
        with pytest.raises(DrpoInputError, match="being driven by another process"):
            resume("locked", settings.runs_dir, models=roles(model), decision={"action": "accept"})
        assert run_status("locked", settings.runs_dir)["status"] == "waiting-for-review"
    finally:
        lock.release()
    assert pending_review("locked", settings.runs_dir)["depth"] == 1


def test_the_shipped_review_example_supervises_a_run(make_settings, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "examples" / "review_loop.py"
    spec = importlib.util.spec_from_file_location("review_loop_example", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    settings = make_settings(depth=3, max_depth_increase=0, review=True).model_copy(update={"run_id": "example"})
    outcome = module.supervise(settings, models=roles(ScriptedChatModel()))
    assert outcome.status == "done"
    depth3 = outcome.result["depths"][2]["candidates"]
    assert [c["prompt"] for c in depth3 if c["origin"] == "human"] == [module.OWN_PROMPT]
    printed = capsys.readouterr().out
    assert "depth 1: rewards [" in printed and "review after depth 2:" in printed


def test_a_released_postgres_run_lock_is_free_the_moment_release_returns(postgres_dsn: str) -> None:
    """The unlock is part of release(), not left to the server's handling of the disconnect, so the next
    command (or the next in-process resume) never finds the run still locked, however loaded the machine."""
    from drpo.store.postgres import PostgresRunLock

    for attempt in range(40):
        first = PostgresRunLock(postgres_dsn, f"lock-{attempt}")
        assert first.acquire()
        assert not PostgresRunLock(postgres_dsn, f"lock-{attempt}").acquire()  # held: refused
        first.release()
        second = PostgresRunLock(postgres_dsn, f"lock-{attempt}")
        assert second.acquire(), f"attempt {attempt}: still locked after release() returned"
        second.release()
