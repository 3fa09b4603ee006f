"""The optimization graph end to end with a scripted model: shape, rules, failures, determinism."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from drpo.errors import SearchStalled
from drpo.run.opening import checkpoint_values
from drpo.store.embeddings import Embedder
from drpo.store.run_dir import run_dir_for
from support.responder import respond, task_of
from support.runs import comparable, roles, run
from support.scripted import ScriptedChatModel


def count_tasks(model: ScriptedChatModel) -> Counter[str]:
    return Counter(task_of(text) for text in model.finished)


def test_search_shape_and_call_counts_match_the_paper(make_settings, embedder: Embedder) -> None:
    settings = make_settings(depth=4, beam_width=2, num_actions=3, max_depth_increase=0)
    model = ScriptedChatModel()
    result = run(settings, roles(model), embedder, "shape").result
    sizes = [len(depth["candidates"]) for depth in result["depths"]]
    assert sizes[:2] == [1, 3]  # the root, then its M children
    assert all(size <= 6 for size in sizes[2:])
    tasks = count_tasks(model)
    skipped = sum(1 for d in result["depths"] for c in d["candidates"] if c["origin"] == "carried")
    assert tasks["answer"] == sum(sizes)
    assert result["usage"]["base"]["calls"] == sum(sizes)
    assert result["usage"]["evaluator"]["calls"] == tasks["evaluate"]
    assert tasks["aspects"] == 4  # one selection per depth's query
    assert [len(d["beam"]) for d in result["depths"]] == [1, 2, 2, 2]
    expanded = sum(len(depth["beam"]) for depth in result["depths"][:-1])  # the last depth is not expanded
    assert tasks["transition"] == 3 * (expanded - skipped)  # M proposals per expanded node, none for a skip
    best = result["best"]
    assert result["best_prompt"] == next(
        c["prompt"] for c in result["depths"][-1]["candidates"] if c["id"] == best["candidate_id"]
    )
    for depth in result["depths"]:
        for candidate in depth["candidates"]:
            for verdict in candidate["evaluations"]:
                assert set(verdict["scores"]) == set(verdict["aspects"])
                assert verdict["reward"] == sum(verdict["scores"].values()) / len(verdict["scores"])
                assert verdict["rationales"]


def test_the_same_seed_gives_the_same_result(make_settings, embedder: Embedder) -> None:
    settings = make_settings(depth=3)
    first = run(settings, roles(ScriptedChatModel()), embedder, "same-a").result
    fresh_store = settings.model_copy(update={"store_dir": settings.runs_dir / "other-store"})
    second = run(fresh_store, roles(ScriptedChatModel()), embedder, "same-b").result
    assert comparable(first) == comparable(second)
    other = run(
        settings.model_copy(update={"search": settings.search.model_copy(update={"seed": 7})}),
        roles(ScriptedChatModel()),
        embedder,
        "same-c",
    ).result
    assert [d["queries"] for d in other["depths"]] != [d["queries"] for d in first["depths"]]


def judge_giving(score: str, rationale: str):
    """A scripted model whose judge gives every aspect of every answer one score."""

    def respond_with(text: str, sample: int) -> str:
        if task_of(text) == "evaluate":
            reply = json.loads(respond(text, sample).split("```json\n", 1)[1].split("\n```", 1)[0])
            return json.dumps({aspect: {"rationale": rationale, "score": score} for aspect in reply})
        return respond(text, sample)

    return respond_with


perfect_judge = judge_giving("5", "flawless")


def test_skip_rule_carries_prompts_and_raises_the_depth(make_settings, embedder: Embedder) -> None:
    settings = make_settings(depth=3, max_depth_increase=2)
    model = ScriptedChatModel(responder=perfect_judge)
    result = run(settings, roles(model), embedder, "skips").result
    assert result["depths_run"] == 5 and result["depth_increases"] == 2 and result["max_depth"] == 5
    assert count_tasks(model)["transition"] == 0
    for depth in result["depths"][1:]:
        assert [c["origin"] for c in depth["candidates"]] == ["carried"]
        assert depth["candidates"][0]["note"] == "skip: all scores are 5"
    assert result["best_prompt"] == "You are a helpful assistant."


def test_last_aggregator_ranks_by_the_latest_reward(make_settings, embedder: Embedder) -> None:
    settings = make_settings(depth=4, path_aggregator="last", num_actions=3)
    result = run(settings, roles(ScriptedChatModel()), embedder, "last").result
    for depth in result["depths"][1:]:
        values = [c["path_value"] for c in depth["candidates"]]
        assert values == [c["reward"] for c in depth["candidates"]]
        assert values == sorted(values, reverse=True)


def test_mean_aggregator_averages_the_path_without_the_root(make_settings, embedder: Embedder) -> None:
    result = run(make_settings(depth=4, num_actions=3), roles(ScriptedChatModel()), embedder, "mean").result
    rewards = {c["id"]: (c["reward"], c["parent"]) for d in result["depths"] for c in d["candidates"]}
    for candidate in result["depths"][-1]["candidates"]:
        path, node = [], candidate["id"]
        while rewards[node][1] is not None:
            path.append(rewards[node][0])
            node = rewards[node][1]
        assert candidate["path_value"] == sum(path) / len(path)


def garbage_judge(text: str, sample: int) -> str:
    return "The answer seems fine to me, 4 out of 5." if task_of(text) == "evaluate" else respond(text, sample)


def test_unparseable_judge_output_is_retried_counted_never_zero_and_stops_the_run(
    make_settings, embedder: Embedder
) -> None:
    settings = make_settings(depth=2, structured_retries=1)
    model = ScriptedChatModel(responder=garbage_judge)
    with pytest.raises(SearchStalled, match=r"the evaluator .* gave no usable verdict for 1 of 1 answers at depth 1"):
        run(settings, roles(model), embedder, "garbage")
    values = checkpoint_values(run_dir_for(settings.runs_dir, "garbage"))
    failures = [f for f in values["failures"] if f["kind"] == "unparseable_evaluation"]
    assert len(failures) == 1 and failures[0]["attempts"] == 2 and "no JSON object" in failures[0]["error"]
    assert [record["reward"] for record in values["evaluations"].values()] == [None]  # never scored 0
    assert count_tasks(model)["evaluate"] == 2 * len(failures)
    assert "beams" not in values or not values["beams"]  # the depth was never ranked on nothing


def novel_aspects(text: str, sample: int) -> Any:
    if task_of(text) == "aspects":
        return json.dumps(
            {
                "aspects_selection": {"reasoning": "why", "selected_aspects": ["Clarity", "Whimsy"]},
                "new_aspect_definitions": {"Whimsy": "The answer is playful."},
            }
        )
    return respond(text, sample)


def test_a_new_aspect_is_defined_for_the_judge(make_settings, embedder: Embedder) -> None:
    model = ScriptedChatModel(responder=novel_aspects)
    result = run(make_settings(depth=2), roles(model), embedder, "novel").result
    first = next(iter(result["aspects"].values()))
    assert first["aspects"] == ["Clarity", "Whimsy"] and first["new_aspects"] == ["Whimsy"]
    judge_prompts = [text for text in model.finished if task_of(text) == "evaluate"]
    assert judge_prompts and all("- Whimsy: The answer is playful." in text for text in judge_prompts)
    scores = result["depths"][0]["candidates"][0]["evaluations"][0]["scores"]
    assert set(scores) == {"Clarity", "Whimsy"}


def failing_selector(text: str, sample: int) -> str:
    return "no idea" if task_of(text) == "aspects" else respond(text, sample)


def test_failed_aspect_selection_falls_back_and_is_reported(make_settings, embedder: Embedder) -> None:
    result = run(make_settings(depth=2), roles(ScriptedChatModel(responder=failing_selector)), embedder, "fb").result
    assert all(record["fallback"] for record in result["aspects"].values())
    kinds = [f["kind"] for f in result["failures"]]
    assert kinds.count("unparseable_selection") == 2


def test_aspect_selections_are_cached_across_runs(make_settings, embedder: Embedder) -> None:
    settings = make_settings(depth=2)
    run(settings, roles(ScriptedChatModel()), embedder, "cache-a")
    model = ScriptedChatModel()
    run(settings, roles(model), embedder, "cache-b")
    assert count_tasks(model)["aspects"] == 0


def test_queries_per_depth_scores_every_candidate_on_b_queries(make_settings, embedder: Embedder) -> None:
    result = run(make_settings(depth=2, queries_per_depth=3), roles(ScriptedChatModel()), embedder, "b3").result
    for depth in result["depths"]:
        assert len(depth["queries"]) == 3
        for candidate in depth["candidates"]:
            assert len(candidate["evaluations"]) == 3


def test_answers_and_artifacts_are_written(make_settings, embedder: Embedder) -> None:
    outcome = run(make_settings(depth=2), roles(ScriptedChatModel()), embedder, "files")
    lines = (outcome.run_dir / "answers.jsonl").read_text().splitlines()
    answers = [json.loads(line) for line in lines]
    ids = {v["answer_id"] for d in outcome.result["depths"] for c in d["candidates"] for v in c["evaluations"]}
    assert {a["answer_id"] for a in answers} == ids
    assert all(a["answer"].startswith("Answer ") for a in answers)
    assert (outcome.run_dir / "config.yaml").is_file() and (outcome.run_dir / "run.log").stat().st_size > 0
    assert json.loads((outcome.run_dir / "status.json").read_text())["status"] == "done"
    assert (outcome.run_dir / "checkpoints.sqlite").stat().st_size > 0


def garbage_optimizer(text: str, sample: int) -> str:
    return '{"analysis": "x"}' if task_of(text) == "transition" else respond(text, sample)


def test_unusable_optimizer_output_is_counted_and_stops_the_run(make_settings, embedder: Embedder) -> None:
    model = ScriptedChatModel(responder=garbage_optimizer)
    settings = make_settings(depth=2, num_actions=2, structured_retries=1)
    with pytest.raises(SearchStalled, match=r"the optimizer .* gave no usable prompt for any of 1 beam nodes"):
        run(settings, roles(model), embedder, "badopt")
    values = checkpoint_values(run_dir_for(settings.runs_dir, "badopt"))
    kinds = Counter(f["kind"] for f in values["failures"])
    assert kinds["unparseable_transition"] == 2  # both samples of the root's transition
    carried = values["proposals"]
    assert [c["origin"] for c in carried] == ["carried"] and carried[0]["note"].startswith("transition failed")
    assert count_tasks(model)["transition"] == 4  # 2 samples x (1 try + 1 retry)


def test_stall_patience_stops_only_after_that_many_failed_depths_in_a_row(make_settings, embedder: Embedder) -> None:
    model = ScriptedChatModel(responder=garbage_optimizer)
    settings = make_settings(depth=4, num_actions=2, structured_retries=0, stall_patience=2, max_depth_increase=0)
    with pytest.raises(SearchStalled, match=r"gave no usable prompt .* at depth 2"):
        run(settings, roles(model), embedder, "patient")
    values = checkpoint_values(run_dir_for(settings.runs_dir, "patient"))
    assert values["depth"] == 2 and values["stalled_depths"] == 1  # depth 1's stall was carried on
    assert len(values["evaluations"]) == 2  # the carried root answered depth 2's query too
    assert count_tasks(model)["transition"] == 4


def test_one_failed_depth_within_patience_is_carried_and_the_run_finishes(make_settings, embedder: Embedder) -> None:
    seen: list[str] = []

    def fails_first_depth(text: str, sample: int) -> str:
        if task_of(text) == "transition":
            seen.append(text)
            if len(seen) <= 2:  # both samples of depth 1's only transition
                return '{"analysis": "x"}'
        return respond(text, sample)

    settings = make_settings(depth=3, num_actions=2, structured_retries=0, stall_patience=2, max_depth_increase=0)
    outcome = run(settings, roles(ScriptedChatModel(responder=fails_first_depth)), embedder, "carried")
    assert Counter(f["kind"] for f in outcome.result["failures"]) == {"unparseable_transition": 2}
    assert [len(depth["candidates"]) for depth in outcome.result["depths"]] == [1, 1, 2]


def test_in_memory_checkpointer_for_library_use(make_settings, embedder: Embedder) -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    from drpo.run.driver import optimize

    settings = make_settings(depth=2).model_copy(update={"run_id": "mem", "checkpointer": "memory"})
    outcome = optimize(settings, models=roles(ScriptedChatModel()), embedder=embedder)
    assert outcome.result["best_prompt"] and not (outcome.run_dir / "checkpoints.sqlite").exists()
    saver = InMemorySaver()
    again = optimize(
        settings.model_copy(update={"run_id": "mem2"}),
        models=roles(ScriptedChatModel()),
        embedder=embedder,
        checkpointer=saver,
    )
    assert saver.get_tuple({"configurable": {"thread_id": "mem2"}}) is not None
    assert again.result["best_prompt"]


def test_resume_re_asks_a_failed_depth_only_when_it_stopped_the_run() -> None:
    from drpo.nodes.stalls import redispatch_node

    state: Any = {"depth": 2, "proposals": [{"carried_because": "transition-failed"}], "stalled_depths": 0}
    assert redispatch_node(state, ("sample_queries",), 0.5, stall_patience=1) == "review"
    assert redispatch_node(state, ("sample_queries",), 0.5, stall_patience=2) is None  # carried on instead
    assert redispatch_node({**state, "stalled_depths": 1}, ("sample_queries",), 0.5, stall_patience=2) == "review"


def test_the_stall_message_names_the_last_error_whole_even_when_it_holds_a_semicolon() -> None:
    from drpo.graph.state import unusable_output
    from drpo.nodes.stalls import _last_error

    record = unusable_output(1, "optimizer", "unusable_prompt", "n1", 2, ["bad JSON", "it repeats; then stops"])
    assert record["error"] == "bad JSON; it repeats; then stops"  # every re-ask's error stays in the trace
    assert _last_error([record], "optimizer", 1) == "it repeats; then stops"
    assert _last_error([record], "optimizer", 2) == "no usable output"


def test_answers_cut_at_max_tokens_are_marked_in_the_search(make_settings, embedder: Embedder) -> None:
    settings = make_settings(depth=2)
    model = ScriptedChatModel(finish_reason_of=lambda text, count: "length" if task_of(text) == "answer" else "stop")
    result = run(settings, roles(model), embedder, "cut").result
    verdicts = [v for d in result["depths"] for c in d["candidates"] for v in c["evaluations"]]
    assert verdicts and all(v["truncated"] for v in verdicts)
    assert result["truncated_answers"] == len(verdicts)
    answers = (settings.runs_dir / "cut" / "answers.jsonl").read_text().splitlines()
    assert answers and all(json.loads(line)["truncated"] for line in answers)


def test_a_judge_that_scores_everything_alike_is_named_in_the_result(make_settings, embedder: Embedder) -> None:
    """Every reward 3.00: the returned prompt is a tie-break, and the result says so instead of a finding."""
    result = run(
        make_settings(depth=3), roles(ScriptedChatModel(responder=judge_giving("3", "fine"))), embedder, "flat"
    ).result
    assert {c["reward"] for d in result["depths"] for c in d["candidates"]} == {3.0}
    assert "the judge told no candidate apart" in result["judge_note"] and "3.00" in result["judge_note"]
    varied = run(make_settings(depth=3), roles(ScriptedChatModel()), embedder, "varied").result
    assert "judge_note" not in varied
