"""Benchmark: speed-up at equal work, and orchestration overhead per model call.

Run: PYTHONPATH=tests .venv/bin/python tests/benchmarks/speedup.py [--depth 20] [--latency 0.2]

The paper's search (W=2, M=3, K=2, B=1) against the local fake OpenAI-compatible server with a
fixed latency per request, once with the concurrency cap at 1 (sequential, like the reference)
and once at the default cap; both runs make the same calls and reach the same result. The bound
is the critical path: per depth, aspect selection overlapping one generation, one evaluation,
and one transition round (the M samples of every beam node in parallel). A last run with zero latency
gives the orchestration and checkpoint overhead per call. Ends with
``speedup <ratio> bound <ratio> overhead_ms <per-call>``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from drpo.runner import optimize
from drpo.settings import load_settings
from drpo.store.embeddings import Embedder
from support.cli import fake_server_config
from support.fake_openai import FakeOpenAIServer


def timed_run(root: Path, name: str, latency: float, concurrency: int, depth: int, embedder: Embedder) -> dict:
    with FakeOpenAIServer(latency=latency) as server:
        config = fake_server_config(
            root / f"{name}.yaml", server.base_url, depth=depth, concurrency=concurrency, max_depth_increase=0
        )
        settings = load_settings(
            config, {"runs_dir": str(root / "runs"), "run_id": name, "store_dir": str(root / f"store-{name}")}
        )
        started = time.perf_counter()
        outcome = optimize(settings, embedder=embedder)
        wall = time.perf_counter() - started
        requests = len(server.requests)
    result = {key: value for key, value in outcome.result.items() if key not in {"run_id", "search"}}
    return {"wall": wall, "requests": requests, "result": result, "depths": result["depths_run"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    embedder = Embedder("packaged:all-minilm-l6-v2")
    embedder.embed(["warm up"])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sequential = timed_run(root, "sequential", args.latency, 1, args.depth, embedder)
        parallel = timed_run(root, "parallel", args.latency, args.concurrency, args.depth, embedder)
        zero = timed_run(root, "zero", 0.0, args.concurrency, args.depth, embedder)
        same = json.dumps(sequential["result"], sort_keys=True) == json.dumps(parallel["result"], sort_keys=True)
        depths = parallel["depths"]
        # per depth: aspect selection overlapping generation, then evaluation; then one transition
        # round (all samples in parallel) on every depth but the last
        critical_requests = depths * 2 + (depths - 1)
        bound_wall = critical_requests * args.latency
        print(f"{'run':<12} {'wall s':>8} {'requests':>9}")
        print(f"{'sequential':<12} {sequential['wall']:>8.1f} {sequential['requests']:>9}")
        print(f"{'parallel':<12} {parallel['wall']:>8.1f} {parallel['requests']:>9}")
        print(f"{'zero-lat.':<12} {zero['wall']:>8.1f} {zero['requests']:>9}")
        print(f"same calls: {sequential['requests'] == parallel['requests']}  same result: {same}")
        speedup = sequential["wall"] / parallel["wall"]
        bound = sequential["wall"] / bound_wall
        overhead_ms = zero["wall"] / max(zero["requests"], 1) * 1000
        print(f"critical path {critical_requests} requests = {bound_wall:.1f} s")
        print(f"speedup {speedup:.2f} bound {bound:.2f} overhead_ms {overhead_ms:.1f}")


if __name__ == "__main__":
    main()
