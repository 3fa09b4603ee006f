"""The held-out split: seeded, per category, and never seen by the search."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from drpo.errors import DrpoInputError
from drpo.eval.queries import load_eval_queries
from drpo.store.embeddings import Embedder
from drpo.store.seeds import default_seed_queries, split_held_out
from support.runs import roles, run
from support.scripted import ScriptedChatModel


def test_the_split_is_seeded_disjoint_and_spread_over_categories() -> None:
    queries = default_seed_queries()
    searched, held = split_held_out(queries, 12, seed=42)
    assert len(held) == 12 and len(searched) == len(queries) - 12
    assert not {q.id for q in searched} & {q.id for q in held}
    assert split_held_out(queries, 12, seed=42) == (searched, held)  # the same split every time
    assert split_held_out(queries, 12, seed=7)[1] != held  # another seed, another split
    total, kept = Counter(q.category for q in queries), Counter(q.category for q in held)
    assert set(kept) == set(total)  # every category is represented
    assert all(abs(kept[c] - 12 * total[c] / len(queries)) <= 1 for c in total)
    assert split_held_out(queries, 0, seed=42) == (queries, [])
    with pytest.raises(DrpoInputError, match="leaves no seed query"):
        split_held_out(queries, len(queries), seed=42)


def test_optimization_never_sees_the_held_out_queries(make_settings, embedder: Embedder) -> None:
    settings = make_settings(depth=3, queries_per_depth=2)
    settings = settings.model_copy(update={"search": settings.search.model_copy(update={"held_out": 40})})
    outcome = run(settings, roles(ScriptedChatModel()), embedder, "held")
    held_file = outcome.run_dir / "held_out.jsonl"
    records = [json.loads(line) for line in held_file.read_text().splitlines()]
    held_ids = {record["id"] for record in records}
    assert len(records) == 40
    searched = {q["id"] for depth in outcome.result["depths"] for q in depth["queries"]}
    assert searched and not searched & held_ids
    assert not set(outcome.result["aspects"]) & held_ids
    queries = load_eval_queries(held_file)  # drpo eval reads it as it is; harmful ones are red-team
    harmful = {q.id for q in default_seed_queries() if q.category == "harmful"}
    assert {q.id for q in queries if q.safety} == held_ids & harmful and any(q.safety for q in queries)
