"""Each node on its own, called with a hand-made state and real services around a scripted model."""

from __future__ import annotations

from pathlib import Path

import pytest
from langgraph.runtime import Runtime
from langgraph.types import Overwrite

from drpo.graph.context import DrpoContext
from drpo.graph.state import ROOT_ID, CandidateRecord, VerdictRecord
from drpo.nodes.evaluate import evaluate
from drpo.nodes.generate import generate
from drpo.nodes.prune_beam import prune_beam
from drpo.nodes.retrieve_icl import retrieve_icl
from drpo.nodes.sample_queries import sample_queries
from drpo.nodes.select_aspects import select_aspects
from drpo.nodes.transition import transition
from drpo.prompts.texts import former_prompts_text
from drpo.run.services import build_services
from drpo.store.embeddings import Embedder
from drpo.store.run_dir import RunDir
from support.runs import roles
from support.scripted import ScriptedChatModel


@pytest.fixture
def runtime(make_settings, embedder: Embedder, tmp_path: Path) -> Runtime:
    settings = make_settings(depth=3, beam_width=2, num_actions=2, max_depth_increase=1)
    run_dir = RunDir(tmp_path / "runs" / "nodes")
    run_dir.root.mkdir(parents=True)
    services = build_services(settings, run_dir, roles(ScriptedChatModel()), embedder)
    yield Runtime(context=DrpoContext(services=services))
    services.close()


def candidate(cid: str, parent: str | None, depth: int, origin: str = "optimizer", note: str = "") -> CandidateRecord:
    return CandidateRecord(id=cid, prompt=f"prompt {cid}", parent=parent, depth=depth, origin=origin, note=note)


def verdict(cid: str, qid: str, depth: int, reward: float | None) -> VerdictRecord:
    scores = {} if reward is None else {"Helpfulness": int(reward), "Clarity": int(reward)}
    return VerdictRecord(
        candidate=cid,
        query=qid,
        depth=depth,
        answer_id=f"{cid}|{qid}",
        answer_preview="",
        scores=scores,
        rationales={k: "r" for k in scores},
        reward=reward,
        attempts=1,
    )


def test_sample_queries_starts_with_the_root_then_orders_children(runtime: Runtime) -> None:
    first = sample_queries({}, runtime)
    assert first["frontier"] == [ROOT_ID] and first["depth"] == 1 and first["max_depth"] == 3
    assert isinstance(first["proposals"], Overwrite)
    order = first["query_order"]
    assert first["queries"] == {"1": order[:1]}
    search = runtime.context.services.settings.search
    reach = (search.depth + search.max_depth_increase) * search.queries_per_depth
    assert order == list(runtime.context.services.seed_order)[:reach]  # only what the search can reach is kept
    state = {
        **first,
        "proposals": [
            candidate("d2-1-0", "x", 2),
            candidate("d2-0-1", "y", 2),
            candidate("d2-0-0", "y", 2, "carried", "skip: all scores are 5"),
        ],
    }
    second = sample_queries(state, runtime)
    assert second["frontier"] == ["d2-0-0", "d2-0-1", "d2-1-0"]
    assert second["queries"] == {"2": order[1:2]}
    assert second["max_depth"] == 4 and second["depth_increases"] == 1  # a skip earned one more depth
    reached = {key: value for key, value in second.items() if key != "proposals"}
    again = sample_queries({**state, **reached, "depth": 1}, runtime)
    assert "max_depth" not in again  # the increase budget (I=1) is spent


def test_retrieve_and_select_for_the_depths_queries(runtime: Runtime) -> None:
    services = runtime.context.services
    qid = services.seed_order[0]
    payload = {"depth": 1, "queries": [qid], "then": "dispatch_generation"}
    retrieved = retrieve_icl(payload, runtime)
    icl = retrieved.update["icl"]
    assert list(icl) == [qid] and len(icl[qid]) == 2 and retrieved.goto == "dispatch_generation"
    selected = select_aspects(payload, runtime).update
    assert 2 <= len(selected["aspects"][qid]["aspects"]) <= 5 and selected["usage"]["aspect_selector"]["calls"] == 1
    ahead = select_aspects({"depth": 2, "queries": [services.seed_order[1]], "then": "sample_queries"}, runtime)
    assert list(ahead.update["aspects"]) == [services.seed_order[1]] and ahead.goto == "sample_queries"


def test_batched_retrieval_finds_what_one_query_each_finds_and_generation_reads_no_chroma(runtime: Runtime) -> None:
    services = runtime.context.services
    store = services.icl_store
    queries = list(services.seed_order[:3])
    expected = {qid: store.nearest_ids(services.query_text(qid), 2) for qid in queries}
    retrieved = retrieve_icl({"depth": 2, "queries": queries, "then": "sample_queries"}, runtime).update["icl"]
    assert retrieved == expected  # one batched Chroma query finds what one query per seed finds
    reads: list[list[str]] = []
    collection_get = store._collection.get

    def counted_get(*args: object, **kwargs: object) -> object:
        reads.append(list(kwargs.get("ids") or []))
        return collection_get(*args, **kwargs)

    store._collection.get = counted_get
    for qid in queries:
        payload = {"depth": 2, "candidate": ROOT_ID, "prompt": "Be kind.", "query": qid, "icl": retrieved[qid]}
        assert generate(payload, runtime)["usage"]["base"]["calls"] == 1
    assert reads == []  # the run's own examples come from memory, never from a Chroma read between calls


def test_generate_then_evaluate_one_branch(runtime: Runtime) -> None:
    services = runtime.context.services
    qid = services.seed_order[0]
    aspects = {
        "aspects": ["Helpfulness", "Clarity"],
        "definitions": {"Helpfulness": "h", "Clarity": "c"},
        "reasoning": "r",
        "new_aspects": [],
        "fallback": False,
    }
    payload = {
        "depth": 1,
        "candidate": ROOT_ID,
        "prompt": "Be kind.",
        "query": qid,
        "icl": services.icl_store.nearest_ids(services.query_text(qid), 2),
    }
    generated = generate(payload, runtime)
    assert generated["usage"]["base"]["calls"] == 1 and generated["usage_by_depth"]["1"]["base"]["calls"] == 1
    assert services.journal.get_answer(f"{ROOT_ID}|{qid}")["answer"].startswith("Answer ")
    update = evaluate({**payload, "aspects": aspects, "answer_id": f"{ROOT_ID}|{qid}"}, runtime)
    record = update["evaluations"][f"{ROOT_ID}|{qid}"]
    assert set(record["scores"]) == {"Helpfulness", "Clarity"} and 1 <= record["reward"] <= 5


def test_prune_keeps_w_by_path_value_and_ends_at_max_depth(runtime: Runtime) -> None:
    candidates = {
        ROOT_ID: candidate(ROOT_ID, None, 1, "initial"),
        "a": candidate("a", ROOT_ID, 2),
        "b": candidate("b", ROOT_ID, 2),
        "c": candidate("c", ROOT_ID, 2),
    }
    evaluations = {
        "a|q2": verdict("a", "q2", 2, 3.0),
        "b|q2": verdict("b", "q2", 2, 4.0),
        "c|q2": verdict("c", "q2", 2, None),
    }
    state = {
        "depth": 2,
        "max_depth": 3,
        "query_order": ["q1", "q2", "q3"],
        "frontier": ["a", "b", "c"],
        "candidates": candidates,
        "evaluations": evaluations,
        "queries": {"1": ["q1"], "2": ["q2"]},
    }
    update = prune_beam(state, runtime)
    assert update["beam"] == ["b", "a"] and "stop_reason" not in update
    assert [entry["path_value"] for entry in update["beams"]["2"]] == [4.0, 3.0, None]
    assert prune_beam({**state, "depth": 3, "queries": {**state["queries"], "3": ["q3"]}}, runtime)["stop_reason"]


def test_transition_skips_high_scores_and_rewrites_others(runtime: Runtime) -> None:
    root = candidate(ROOT_ID, None, 1, "initial")
    high = {
        "depth": 1,
        "rank": 0,
        "candidate": root,
        "history": [root["prompt"]],
        "evaluations": [verdict(ROOT_ID, "q", 1, 5.0)],
        "aspects": {},
    }
    carried = transition(high, runtime)["proposals"]
    assert [(c["id"], c["origin"], c["prompt"]) for c in carried] == [("d2-0-0", "carried", root["prompt"])]
    services = runtime.context.services
    qid = services.seed_order[0]
    services.journal.put_answer(f"{ROOT_ID}|{qid}", {"answer": "An answer."})
    low = {**high, "rank": 1, "evaluations": [verdict(ROOT_ID, qid, 1, 3.0)]}
    update = transition(low, runtime)
    assert [c["id"] for c in update["proposals"]] == ["d2-1-0", "d2-1-1"]
    assert all(c["origin"] == "optimizer" and c["parent"] == ROOT_ID for c in update["proposals"])
    assert update["usage"]["optimizer"]["calls"] == 2


def test_former_prompts_collapse_repeats_from_skips() -> None:
    text = former_prompts_text(["A", "A", "B", "B", "C"])
    assert text == "---Version 1---\nA\n\n---Version 2---\nB\n\n---Current Version---\nC"


def test_aspect_cache_entries_in_an_older_format_are_selected_again(make_settings, embedder) -> None:
    from drpo.prompts import ASPECT_SELECTION, template_hash
    from drpo.store.aspect_cache import AspectCache
    from drpo.store.seeds import default_seed_queries
    from support.runs import roles, run

    settings = make_settings(depth=2)
    cache = AspectCache(settings.resolved_store_dir() / "aspect_cache.sqlite")
    for seed in default_seed_queries():  # what an earlier drpo stored: the bare record
        cache.put(seed.text, "custom:ScriptedChatModel", template_hash(ASPECT_SELECTION), {"aspects": ["Old"]})
    cache.close()
    result = run(settings, roles(ScriptedChatModel()), embedder, "stale-cache").result
    assert result["usage"]["aspect_selector"]["calls"] == 2
    assert all("Old" not in record["aspects"] for record in result["aspects"].values())
