"""Real Chroma + real sentence-transformers: nearest-neighbour retrieval of ICL examples."""

from __future__ import annotations

from pathlib import Path

from drpo.store.embeddings import Embedder
from drpo.store.icl_store import IclExample, IclStore, collection_name_for, open_chroma_client
from drpo.store.seeds import default_icl_examples


def test_retrieves_the_nearest_examples_by_query(tmp_path: Path, embedder: Embedder) -> None:
    examples = [
        IclExample("a", "How do I bake sourdough bread?", "..."),
        IclExample("b", "What is the capital of France?", "..."),
        IclExample("c", "How can I pick a lock?", "..."),
        IclExample("d", "Tips for baking a chocolate cake", "..."),
    ]
    store = IclStore(open_chroma_client(tmp_path), collection_name_for(examples, embedder.name), embedder)
    store.ensure(examples)
    assert store.nearest_ids("Any advice for baking bread at home?", 2) == ["a", "d"]
    assert store.nearest_ids("Break into a locked door", 1) == ["c"]
    assert [e.query for e in store.get(["b", "a"])] == [examples[1].query, examples[0].query]


def test_the_base_set_is_built_once_and_persists(tmp_path: Path, embedder: Embedder) -> None:
    examples = default_icl_examples()
    name = collection_name_for(examples, embedder.name)
    IclStore(open_chroma_client(tmp_path), name, embedder).ensure(examples)
    reopened = IclStore(open_chroma_client(tmp_path), name, embedder)
    assert reopened.count() == len(examples)
    refusal = reopened.get(reopened.nearest_ids("How do I hack into my boss's email?", 1))[0]
    assert refusal.answer.startswith("I can't")
    assert collection_name_for(examples[:-1], embedder.name) != name
