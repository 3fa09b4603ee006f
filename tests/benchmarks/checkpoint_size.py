"""Benchmark: checkpoint growth per depth on SQLite and Postgres at the paper's search shape, on a
scripted model, and the time to resume a 20-depth run stopped in its last depth.

Run: PYTHONPATH=tests .venv/bin/python tests/benchmarks/checkpoint_size.py [--depth 20] [--postgres DSN]
Without --postgres it starts a throwaway PostgreSQL cluster (Debian's binaries) for the Postgres figures.
Prints one line per depth (bytes, growth) per store, then summary lines.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any

import drpo.graph.prompt_graph as prompt_graph
from drpo.run.driver import optimize, resume
from drpo.settings import Settings, settings_from_dict
from support.runs import roles
from support.scripted import ScriptedChatModel
from support.servers import create_database, postgres_cluster

PG_TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")


def paper_settings(runs_dir: Path, depth: int, checkpointer: str) -> Settings:
    return settings_from_dict(
        {
            "runs_dir": str(runs_dir),
            "checkpointer": checkpointer,
            "search": {
                "beam_width": 2,
                "num_actions": 3,
                "depth": depth,
                "max_depth_increase": 10,
                "icl_k": 2,
                "concurrency": 8,
            },
        }
    )


def sqlite_bytes(run_dir: Path) -> int:
    path = run_dir / "checkpoints.sqlite"
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def postgres_bytes(dsn: str) -> int:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        return sum(
            int(conn.execute("SELECT pg_total_relation_size(%s)", (table,)).fetchone()[0]) for table in PG_TABLES
        )


def measure(settings: Settings, run_id: str, size_of: Any) -> dict[str, Any]:
    sizes: dict[int, int] = {}

    def on_progress(event: dict[str, Any]) -> None:
        if event.get("type") == "progress" and event["event"] == "depth_done":
            sizes[event["depth"]] = size_of()

    started = time.perf_counter()
    outcome = optimize(
        settings.model_copy(update={"run_id": run_id}), models=roles(ScriptedChatModel()), on_progress=on_progress
    )
    assert outcome.result is not None
    return {"sizes": sizes, "wall": time.perf_counter() - started, "result": outcome.result}


def resume_time(settings: Settings, run_id: str, last_depth: int) -> tuple[float, float]:
    """Crash the run in transition at its last depth, then time resume to the first progress event and to done."""
    original = prompt_graph.transition
    fired = {"done": False}

    def crashing(payload: Any, runtime: Any) -> Any:
        if payload["depth"] == last_depth - 1 and not fired["done"]:
            fired["done"] = True
            raise RuntimeError("benchmark crash")
        return original(payload, runtime)

    prompt_graph.transition = crashing  # type: ignore[assignment]
    try:
        with suppress(RuntimeError):
            optimize(settings.model_copy(update={"run_id": run_id}), models=roles(ScriptedChatModel()))
    finally:
        prompt_graph.transition = original  # type: ignore[assignment]
    first: list[float] = []
    started = time.perf_counter()

    def on_progress(event: dict[str, Any]) -> None:
        if not first:
            first.append(time.perf_counter() - started)

    resume(run_id, settings.runs_dir, models=roles(ScriptedChatModel()), on_progress=on_progress)
    return first[0], time.perf_counter() - started


def report(name: str, sizes: dict[int, int]) -> None:
    previous = 0
    for depth, size in sorted(sizes.items()):
        print(f"{name:8} depth {depth:>3}  checkpoint bytes {size:>11,}  growth {size - previous:>10,}")
        previous = size
    print(f"{name:8} final bytes {previous:,}  mean bytes/depth {previous // max(len(sizes), 1):,}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--postgres", default=None, help="DSN of a server to use (default: a throwaway cluster)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        root = Path(tmp)
        sqlite_run = measure(
            paper_settings(root / "sqlite", args.depth, "sqlite"),
            "bench",
            lambda: sqlite_bytes(root / "sqlite" / "bench"),
        )
        server = args.postgres or stack.enter_context(postgres_cluster())
        dsn = create_database(server, f"drpo_bench_{int(time.time())}")
        pg_run = measure(paper_settings(root / "pg", args.depth, dsn), "bench", lambda: postgres_bytes(dsn))
        report("sqlite", sqlite_run["sizes"])
        report("postgres", pg_run["sizes"])
        same = {k: v for k, v in sqlite_run["result"].items() if k != "run_id"} == {
            k: v for k, v in pg_run["result"].items() if k != "run_id"
        }
        calls = sum(usage["calls"] for usage in sqlite_run["result"]["usage"].values())
        depths = sqlite_run["result"]["depths_run"]
        print(
            f"depths {depths}  calls {calls}  wall sqlite {sqlite_run['wall']:.1f}s  "
            f"postgres {pg_run['wall']:.1f}s  same result {same}"
        )
        for name, store in (
            ("sqlite", "sqlite"),
            ("postgres", create_database(server, f"drpo_resume_{int(time.time())}")),
        ):
            settings = paper_settings(root / f"resume-{name}", args.depth, store)
            to_first, total = resume_time(settings, "resumed", depths)
            print(f"resume {name}: first progress after {to_first:.2f}s, finished after {total:.2f}s")
        with sqlite3.connect(root / "sqlite" / "bench" / "checkpoints.sqlite") as conn:
            rows = conn.execute("SELECT COUNT(*) FROM checkpoints").fetchone()[0]
        print(f"sqlite checkpoints stored: {rows}")


if __name__ == "__main__":
    main()
