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


def test_batched_retrieval_gives_each_thread_what_the_store_gives_it(tmp_path: Path, embedder: Embedder) -> None:
    import threading

    from drpo.serve.batched_retrieval import BatchedRetriever

    topics = ["baking bread", "fixing a bicycle", "tax returns", "training a puppy", "growing tomatoes", "jazz"]
    examples = [IclExample(str(n), f"How do I get started with {t}?", t) for n, t in enumerate(topics)]
    store = IclStore(open_chroma_client(tmp_path), collection_name_for(examples, embedder.name), embedder)
    store.add(examples)
    queries = [f"question {n} about {topics[n % len(topics)]}" for n in range(24)]
    expected = {query: store.nearest_ids(query, 2) for query in queries}
    batched = BatchedRetriever(store)
    got: dict[str, list[str]] = {}
    start = threading.Barrier(len(queries))

    def ask(query: str) -> None:
        start.wait()
        got[query] = batched.nearest_ids(query, 2)

    threads = [threading.Thread(target=ask, args=(query,)) for query in queries]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert got == expected
    assert batched.queries == len(queries) and batched.batches < len(queries)  # some queries shared a batch


def test_an_empty_collection_answers_without_loading_the_embedding_model(tmp_path: Path) -> None:
    cold = Embedder("packaged:all-minilm-l6-v2")  # nothing loaded yet
    store = IclStore(open_chroma_client(tmp_path), "empty", cold)
    assert store.nearest_ids("Any question at all", 2) == []
    assert not cold.model_loaded


def test_readers_missing_the_same_examples_at_once_share_one_chroma_read(tmp_path: Path, embedder: Embedder) -> None:
    import threading

    examples = default_icl_examples()
    store = IclStore(open_chroma_client(tmp_path), collection_name_for(examples, embedder.name), embedder)
    store.ensure(examples)
    wanted = [example.id for example in examples[:3]]
    reads: list[list[str]] = []
    collection_get = store._collection.get

    def slow_get(*args: object, **kwargs: object) -> object:
        reads.append(list(kwargs["ids"]))  # type: ignore[arg-type]
        threading.Event().wait(0.05)  # every reader arrives while the first read is running
        return collection_get(*args, **kwargs)

    store._collection.get = slow_get
    start = threading.Barrier(6)
    got: list[list[str]] = []

    def read() -> None:
        start.wait()
        got.append([example.answer for example in store.get(wanted)])

    threads = [threading.Thread(target=read) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert reads == [wanted]
    assert got == [[example.answer for example in examples[:3]]] * 6


def test_exact_search_over_cached_vectors_returns_what_the_collection_returns(
    tmp_path: Path, embedder: Embedder
) -> None:
    """A run's first depth retrieves from cached vectors while Chroma opens; later depths ask Chroma. Both
    must give the same examples in the same order, or the first depth's answers would depend on the store."""
    from drpo.store.icl_store import exact_nearest_ids
    from drpo.store.seeds import default_seed_queries

    examples = default_icl_examples()
    store = IclStore(open_chroma_client(tmp_path), collection_name_for(examples, embedder.name), embedder)
    store.ensure(examples)
    vectors = dict(zip([e.id for e in examples], embedder.embed([e.query for e in examples]), strict=True))
    queries = [seed.text for seed in default_seed_queries()]
    assert len(queries) >= 40
    for query, query_vector in zip(queries, embedder.embed(queries), strict=True):
        for k in (1, 2, 4):
            assert exact_nearest_ids(query_vector, vectors, k) == store.nearest_ids(query, k, query_vector), (query, k)
    assert exact_nearest_ids(vectors[examples[0].id], vectors, 0) == []
    assert exact_nearest_ids(vectors[examples[0].id], vectors, 1) == [examples[0].id]
    assert exact_nearest_ids(vectors[examples[0].id], {}, 2) == []
