"""Benchmark: SQLite checkpoint growth per depth at the paper's search shape, on a scripted model.

Run: PYTHONPATH=tests .venv/bin/python tests/benchmarks/checkpoint_size.py [--depth 20]
Prints one line per depth (file size, growth) and a summary line.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from drpo.runner import optimize
from drpo.settings import settings_from_dict
from support.runs import roles
from support.scripted import ScriptedChatModel


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--depth", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = settings_from_dict(
            {
                "runs_dir": str(Path(tmp) / "runs"),
                "run_id": "bench",
                "search": {
                    "beam_width": 2,
                    "num_actions": 3,
                    "depth": args.depth,
                    "max_depth_increase": 10,
                    "icl_k": 2,
                    "concurrency": 8,
                },
            }
        )
        sizes: dict[int, int] = {}
        checkpoint = Path(tmp) / "runs" / "bench" / "checkpoints.sqlite"

        def on_progress(event: dict) -> None:
            if event["node"] == "prune_beam":
                wal = checkpoint.with_name(checkpoint.name + "-wal")
                sizes[event["depth"]] = checkpoint.stat().st_size + (wal.stat().st_size if wal.exists() else 0)

        model = ScriptedChatModel()
        started = time.perf_counter()
        outcome = optimize(settings, models=roles(model), on_progress=on_progress)
        elapsed = time.perf_counter() - started
        previous = 0
        for depth, size in sorted(sizes.items()):
            print(f"depth {depth:>3}  checkpoint bytes {size:>10,}  growth {size - previous:>9,}")
            previous = size
        calls = sum(usage["calls"] for usage in outcome.result["usage"].values())
        print(
            f"depths {outcome.result['depths_run']}  calls {calls}  wall {elapsed:.1f}s  "
            f"final checkpoint bytes {previous:,}  mean bytes/depth {previous // max(len(sizes), 1):,}"
        )


if __name__ == "__main__":
    main()
