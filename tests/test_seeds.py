from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from drpo.errors import DrpoInputError
from drpo.store.seeds import (
    default_icl_examples,
    default_seed_queries,
    load_icl_file,
    load_seed_file,
    query_order,
)


def test_our_seed_set_covers_every_category() -> None:
    queries = default_seed_queries()
    assert len(queries) >= 90
    counts = Counter(query.category for query in queries)
    for category in ("informative", "advice", "creative", "reasoning", "realtime_or_physical", "harmful"):
        assert counts[category] >= 10, category


def test_our_icl_set_is_half_refusals(shared_data: Path) -> None:
    examples = default_icl_examples()
    assert len(examples) >= 16
    refusals = [e for e in examples if e.answer.startswith(("I can't", "I won't", "I'm really sorry"))]
    assert len(refusals) == len(examples) // 2
    seed_texts = {query.text for query in default_seed_queries()}
    assert not seed_texts & {example.query for example in examples}
    reference = json.loads((shared_data / "drpo-reference" / "ICL_examples.json").read_text())
    assert not set(reference) & {example.query for example in examples}  # ours, not the paper's


def test_loads_the_papers_formats(shared_data: Path) -> None:
    ref = shared_data / "drpo-reference"
    assert len(load_seed_file(ref / "alpaca_train.json", "alpaca")) == 86
    assert len(load_seed_file(ref / "lima_subsample_train.json", "lima")) == 52
    assert len(load_seed_file(ref / "mal_train.txt")) == 42
    just_eval = load_seed_file(shared_data / "just-eval" / "just_eval_instruct.jsonl")
    assert len(just_eval) > 900 and just_eval[0].text


def test_loads_reference_icl_examples_without_markers(shared_data: Path) -> None:
    examples = load_icl_file(shared_data / "drpo-reference" / "ICL_examples.json")
    assert len(examples) == 16
    assert all(not e.answer.startswith("<START>") and not e.answer.endswith("<END>") for e in examples)


def test_lima_conversations_and_alpaca_input(tmp_path: Path) -> None:
    lima = tmp_path / "lima.json"
    lima.write_text(json.dumps([{"conversations": ["What is X?", "X is..."], "source": "s"}]))
    assert load_seed_file(lima, "lima")[0].text == "What is X?"
    alpaca = tmp_path / "alpaca.json"
    alpaca.write_text(json.dumps([{"instruction": "Translate", "input": "hola"}]))
    assert load_seed_file(alpaca)[0].text == "Translate\n\nhola"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.txt", "\n\n", "holds no queries"),
        ("bad.json", "{not json", "not valid JSON"),
        ("obj.json", '{"a": 1}', "JSON list"),
        ("rec.json", '[{"text": "x"}]', "record 1"),
        ("bad.jsonl", '{"instruction": "a"}\nnope\n', "line 2"),
    ],
)
def test_bad_seed_files(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DrpoInputError, match=message):
        load_seed_file(path)


def test_missing_seed_file() -> None:
    with pytest.raises(DrpoInputError, match="seed file not found"):
        load_seed_file(Path("/nonexistent/seeds.txt"))


def test_query_order_is_seeded_and_reproducible() -> None:
    queries = default_seed_queries()
    assert query_order(queries, 1) == query_order(queries, 1)
    assert query_order(queries, 1) != query_order(queries, 2)
    assert sorted(query_order(queries, 1)) == sorted(q.id for q in queries)
