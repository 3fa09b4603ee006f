"""In-context examples in Chroma, retrieved by similarity of their queries.

Embeddings are computed by our own sentence-transformers model and passed explicitly,
so Chroma's default embedding function (which downloads a model) is never used.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drpo.store.embeddings import Embedder


@dataclass(frozen=True)
class IclExample:
    """One in-context example: a query and the answer to show the base model."""

    id: str
    query: str
    answer: str


def example_id(query: str) -> str:
    return "icl-" + hashlib.sha256(query.encode("utf-8")).hexdigest()[:12]


def exact_nearest_ids(query_vector: list[float], example_vectors: dict[str, list[float]], k: int) -> list[str]:
    """The ``k`` ids whose vectors are nearest ``query_vector`` by cosine distance (the collections' space),
    nearest first, found by comparing with every vector. A run's first retrieval is made this way from cached
    vectors while Chroma is still opening; it must return what the collection's query returns (tested).
    Plain Python: it runs beside Chroma's import, and must not import numpy on a second thread."""
    if k <= 0 or not example_vectors:
        return []
    query_norm = math.sqrt(sum(value * value for value in query_vector)) or 1.0

    def similarity(vector: list[float]) -> float:
        norm = math.sqrt(sum(value * value for value in vector)) * query_norm
        return sum(a * b for a, b in zip(vector, query_vector, strict=True)) / (norm or 1.0)

    ranked = sorted(example_vectors, key=lambda item_id: -similarity(example_vectors[item_id]))
    return ranked[:k]


def collection_name_for(examples: list[IclExample], embedder_name: str, prefix: str = "drpo-icl") -> str:
    """A name that changes when the examples or the embedder change, so a stale index is never reused."""
    digest = hashlib.sha256()
    digest.update(embedder_name.encode())
    for example in examples:
        digest.update(json.dumps([example.id, example.query, example.answer]).encode())
    return f"{prefix}-{digest.hexdigest()[:16]}"


def icl_collection_name(run_id: str) -> str:
    """The Chroma collection holding an ICL run's optimized examples."""
    return f"drpo-icl-{run_id}"


def open_chroma_client(path: Path) -> Any:
    """Embedded persistent Chroma client with telemetry off."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=ChromaSettings(anonymized_telemetry=False))


def open_chroma_server(url: str) -> Any:
    """A client of a Chroma server (``chroma run``), or one clear error when it does not answer."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    from drpo.errors import DrpoInputError
    from drpo.settings import parse_chroma_url

    host, port, ssl = parse_chroma_url(url)
    try:
        client = chromadb.HttpClient(host=host, port=port, ssl=ssl, settings=ChromaSettings(anonymized_telemetry=False))
        client.heartbeat()
    except Exception as error:
        from drpo.store.redaction import redact

        cause = " ".join(str(error).split())[:200] or "no answer"
        raise DrpoInputError(
            redact(f"cannot reach the Chroma server at {url}: {type(error).__name__}: {cause}")
        ) from None
    return client


def chroma_client_for(chroma_url: str | None, store_dir: Path) -> Any:
    """The Chroma server when one is configured, else the embedded store under ``store_dir``."""
    return open_chroma_server(chroma_url) if chroma_url else open_chroma_client(store_dir / "chroma")


class IclStore:
    """One Chroma collection of ICL examples with K-nearest retrieval by query."""

    def __init__(self, client: Any, collection_name: str, embedder: Embedder) -> None:
        self._embedder = embedder
        self._collection = client.get_or_create_collection(
            name=collection_name,
            embedding_function=None,
            metadata={"hnsw:space": "cosine", "embedder": embedder.name},
        )
        self.name = collection_name
        self._by_id: dict[str, IclExample] = {}
        self._reading = threading.Lock()

    @classmethod
    def open_existing(cls, client: Any, collection_name: str, embedder: Embedder) -> IclStore:
        """Open a collection that must already exist (serving never creates an empty one)."""
        store = cls.__new__(cls)
        store._embedder = embedder
        store._collection = client.get_collection(name=collection_name, embedding_function=None)
        store.name = collection_name
        store._by_id = {}
        store._reading = threading.Lock()
        return store

    def count(self) -> int:
        return int(self._collection.count())

    def add(self, examples: list[IclExample], metadata: list[dict[str, Any]] | None = None) -> None:
        """Upsert examples; ``metadata`` adds provenance (scores, source run) per example."""
        if not examples:
            return
        extra = metadata or [{} for _ in examples]
        self._collection.upsert(
            ids=[example.id for example in examples],
            embeddings=self._embedder.embed([example.query for example in examples]),
            documents=[example.answer for example in examples],
            metadatas=[{**more, "query": example.query} for example, more in zip(examples, extra, strict=True)],
        )
        with self._reading:  # after the upsert: a read racing it cannot leave an old text cached
            self._by_id.clear()

    def metadata(self) -> list[dict[str, Any]]:
        """Every example's id, query, answer and provenance."""
        found = self._collection.get(include=["documents", "metadatas"])
        return [
            {"id": item_id, "answer": doc, **meta}
            for item_id, doc, meta in zip(found["ids"], found["documents"], found["metadatas"], strict=True)
        ]

    def ensure(self, examples: list[IclExample]) -> None:
        """Build the collection on first use."""
        if self.count() < len(examples):
            self.add(examples)

    def nearest_ids(self, query: str, k: int, embedding: list[float] | None = None) -> list[str]:
        """Ids of the ``k`` examples whose queries are most similar to ``query``, nearest first
        (``embedding``: the query's, when already computed)."""
        if k <= 0:
            return []
        if embedding is None:
            if self.count() == 0:  # nothing to find: do not load the embedding model for it
                return []
            embedding = self._embedder.embed([query])[0]
        return self.nearest_ids_many([embedding], k)[0]

    def nearest_ids_many(self, embeddings: list[list[float]], k: int) -> list[list[str]]:
        """The ``k`` nearest ids for each of several query embeddings, in one Chroma query."""
        count = self.count()
        if k <= 0 or count == 0:
            return [[] for _ in embeddings]
        result = self._collection.query(query_embeddings=embeddings, n_results=min(k, count), include=[])
        return [list(ids) for ids in result["ids"]]

    def embed_queries(self, queries: list[str]) -> list[list[float]]:
        return self._embedder.embed(queries)

    def get(self, ids: list[str]) -> list[IclExample]:
        """Examples by id, in the order asked; each read from Chroma once (every candidate of a depth asks
        for the same few, and a Chroma read costs milliseconds on the path between model calls). Callers
        that miss at the same moment wait for one read instead of each making their own."""
        if any(item_id not in self._by_id for item_id in ids):
            with self._reading:
                wanted = [item_id for item_id in dict.fromkeys(ids) if item_id not in self._by_id]
                if wanted:
                    found = self._collection.get(ids=wanted, include=["documents", "metadatas"])
                    for item_id, doc, meta in zip(found["ids"], found["documents"], found["metadatas"], strict=True):
                        self._by_id[item_id] = IclExample(id=item_id, query=str(meta["query"]), answer=str(doc))
        missing = [item_id for item_id in ids if item_id not in self._by_id]
        if missing:
            raise KeyError(f"ICL examples missing from collection {self.name}: {missing}")
        return [self._by_id[item_id] for item_id in ids]
