"""A SQLite checkpointer that stores each channel's value once per version, like the Postgres saver.

LangGraph's SqliteSaver serializes the whole state into every checkpoint, so a long search rewrites
its growing state at every step. Here a checkpoint keeps only its channel versions; values live in a
``checkpoint_blobs`` table written only for the channels a step changed. Checkpoints written by the
plain saver (channel values inline) still load.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any, NoReturn

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata, CheckpointTuple
from langgraph.checkpoint.sqlite import SqliteSaver

BLOBS_DDL = """
CREATE TABLE IF NOT EXISTS checkpoint_blobs (
    thread_id TEXT NOT NULL, checkpoint_ns TEXT NOT NULL DEFAULT '', channel TEXT NOT NULL,
    version TEXT NOT NULL, type TEXT NOT NULL, blob BLOB,
    PRIMARY KEY (thread_id, checkpoint_ns, channel, version))
"""
EMPTY = "empty"  # a channel with no value at that version


class NormalizedSqliteSaver(SqliteSaver):
    """SqliteSaver with per-channel, per-version value storage."""

    def setup(self) -> None:
        """Called under the saver's lock by ``cursor()``, like the parent's."""
        if self.is_setup:
            return
        super().setup()
        self.conn.execute(BLOBS_DDL)
        self.conn.commit()

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        thread_id = str(config["configurable"]["thread_id"])
        namespace = str(config["configurable"].get("checkpoint_ns", ""))
        values = checkpoint["channel_values"]
        rows = []
        for channel, version in new_versions.items():
            kind, blob = self.serde.dumps_typed(values[channel]) if channel in values else (EMPTY, None)
            rows.append((thread_id, namespace, channel, str(version), kind, blob))
        with self.cursor() as cur:
            cur.executemany(
                "INSERT OR REPLACE INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
        return super().put(config, {**checkpoint, "channel_values": {}}, metadata, new_versions)

    def _hydrate(self, saved: CheckpointTuple) -> CheckpointTuple:
        checkpoint = saved.checkpoint
        thread_id = str(saved.config["configurable"]["thread_id"])
        namespace = str(saved.config["configurable"].get("checkpoint_ns", ""))
        values = dict(checkpoint.get("channel_values") or {})  # inline values of plain-saver checkpoints
        versions = checkpoint.get("channel_versions", {})
        missing = [(channel, str(version)) for channel, version in versions.items() if channel not in values]
        if missing:
            with self.cursor(transaction=False) as cur:
                for channel, version in missing:
                    row = cur.execute(
                        "SELECT type, blob FROM checkpoint_blobs WHERE thread_id = ? AND checkpoint_ns = ? "
                        "AND channel = ? AND version = ?",
                        (thread_id, namespace, channel, version),
                    ).fetchone()
                    if row is not None and row[0] != EMPTY:
                        values[channel] = self.serde.loads_typed((row[0], row[1]))
        return saved._replace(checkpoint={**checkpoint, "channel_values": values})

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        saved = super().get_tuple(config)
        return None if saved is None else self._hydrate(saved)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        # The parent yields while holding the saver's lock, which hydrating needs: read the page first.
        page = list(super().list(config, filter=filter, before=before, limit=limit))
        for saved in page:
            yield self._hydrate(saved)

    def delete_thread(self, thread_id: str) -> None:
        super().delete_thread(thread_id)
        with self.cursor() as cur:
            cur.execute("DELETE FROM checkpoint_blobs WHERE thread_id = ?", (str(thread_id),))

    def get_delta_channel_history(self, *, config: RunnableConfig, channels: Sequence[str]) -> NoReturn:
        """Refused: the parent's fast path reads channel values from the checkpoint rows, which this saver
        keeps empty (values live in ``checkpoint_blobs``), so it would silently return nothing."""
        raise NotImplementedError(
            "NormalizedSqliteSaver does not support get_delta_channel_history (DeltaChannel); "
            "use LangGraph's SqliteSaver or the Postgres saver for graphs with delta channels"
        )

    async def aget_delta_channel_history(self, *, config: RunnableConfig, channels: Sequence[str]) -> Mapping[str, Any]:
        return self.get_delta_channel_history(config=config, channels=channels)

    # Async methods: the same statements on a worker thread (the saver serializes access to its connection),
    # so async graphs and LangGraph's conformance suite can use this saver too.

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await asyncio.to_thread(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        page = await asyncio.to_thread(lambda: list(self.list(config, filter=filter, before=before, limit=limit)))
        for saved in page:
            yield saved

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await asyncio.to_thread(self.delete_thread, thread_id)
