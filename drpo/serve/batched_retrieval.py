"""Retrieval for many concurrent requests: their queries are embedded and looked up together.

Embedding one short query costs about as much as embedding a few dozen in one batch on a CPU, so
a server that embeds each request on its own spends its cores there under load. Whoever finds no
batch in progress serves every query queued so far in one embedding call and one Chroma query;
the others wait for it. A lone request is served at once (no waiting window), so an idle server
answers as fast as before.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from drpo.store.icl_store import IclExample, IclStore


@dataclass
class _Ask:
    query: str
    k: int
    done: threading.Event = field(default_factory=threading.Event)
    ids: list[str] = field(default_factory=list)
    error: BaseException | None = None


class BatchedRetriever:
    """The ``nearest_ids``/``get`` interface of :class:`IclStore`, batched across threads."""

    def __init__(self, store: IclStore, max_batch: int = 128) -> None:
        self.store = store
        self.max_batch = max_batch
        self._serving = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queue: list[_Ask] = []
        self.batches = 0  # embedding calls made; with ``queries`` it shows how much batching happened
        self.queries = 0

    def nearest_ids(self, query: str, k: int) -> list[str]:
        ask = _Ask(query, k)
        with self._queue_lock:
            self._queue.append(ask)
        while not ask.done.is_set():
            with self._serving:  # one batch at a time; the holder serves everyone queued
                if not ask.done.is_set():
                    self._serve_queued()
        if ask.error is not None:
            raise ask.error
        return ask.ids

    def get(self, ids: list[str]) -> list[IclExample]:
        return self.store.get(ids)

    def _serve_queued(self) -> None:
        with self._queue_lock:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
        if not batch:
            return
        try:
            vectors = self.store.embed_queries([ask.query for ask in batch])
            found = self.store.nearest_ids_many(vectors, max(ask.k for ask in batch))
            for ask, ids in zip(batch, found, strict=True):
                ask.ids = ids[: ask.k]
        except BaseException as error:  # every waiter gets the failure, none waits forever
            for ask in batch:
                ask.error = error
        finally:
            self.batches += 1
            self.queries += len(batch)
            for ask in batch:
                ask.done.set()
