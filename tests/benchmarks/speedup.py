"""Benchmark: speed-up at equal work, and orchestration overhead per model call.

Run: PYTHONPATH=tests .venv/bin/python tests/benchmarks/speedup.py [--depth 20] [--latency 0.2]

The paper's search (W=2, M=3, K=2, B=1) against the fake OpenAI-compatible server, run in its own
process like a real provider, with a fixed latency per request: once with the concurrency cap at 1
(sequential, like the reference) and once at the default cap; both make the same calls and reach
the same result. The bound is the critical path: per depth, aspect selection overlapping one
generation, one evaluation, and one transition round (the M samples of every beam node in parallel).
A last run with zero latency gives the overhead per call: its wall time per request minus the
transport baseline (the same LangChain client calling the same server directly, as many requests
at the same concurrency) is drpo's orchestration and checkpoint overhead. Checkpoint bytes per
depth come from that run's SQLite file. Ends with ``speedup <ratio> bound <ratio> overhead_ms <per-call>``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from langchain_core.messages import HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI

from drpo.run.driver import optimize
from drpo.settings import load_settings
from drpo.store.embeddings import Embedder
from support.cli import fake_server_config
from support.fake_openai import fake_server_process


def requests_in(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def timed_run(root: Path, name: str, latency: float, concurrency: int, depth: int, embedder: Embedder) -> dict:
    log = root / f"{name}.requests.jsonl"
    with fake_server_process(latency, log) as base_url:
        config = fake_server_config(
            root / f"{name}.yaml", base_url, depth=depth, concurrency=concurrency, max_depth_increase=0
        )
        settings = load_settings(
            config, {"runs_dir": str(root / "runs"), "run_id": name, "store_dir": str(root / f"store-{name}")}
        )
        started = time.perf_counter()
        outcome = optimize(settings, embedder=embedder)
        wall = time.perf_counter() - started
    assert outcome.result is not None
    result = {key: value for key, value in outcome.result.items() if key not in {"run_id", "search"}}
    checkpoint = root / "runs" / name / "checkpoints.sqlite"
    wal = checkpoint.with_name(checkpoint.name + "-wal")
    size = checkpoint.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    return {"wall": wall, "requests": requests_in(log), "result": result, "depths": result["depths_run"], "bytes": size}


def transport_baseline(root: Path, requests: int, concurrency: int) -> float:
    """Seconds per request for the bare client-server round trip at the run's concurrency."""
    with fake_server_process(0.0, root / "baseline.requests.jsonl") as base_url:
        model = ChatOpenAI(model="fake", base_url=base_url, api_key="unused", max_retries=0, temperature=0)

        def call(index: int) -> None:
            model.invoke([SystemMessage(content="You are a helpful assistant."), HumanMessage(content=f"q {index}")])

        call(-1)
        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(call, range(requests)))
        return (time.perf_counter() - started) / requests


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
        baseline = transport_baseline(root, zero["requests"], args.concurrency)
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
        per_call_ms = zero["wall"] / max(zero["requests"], 1) * 1000
        overhead_ms = per_call_ms - baseline * 1000
        print(
            f"critical path {critical_requests} requests = {bound_wall:.1f} s; "
            f"speedup is {speedup / bound:.0%} of the bound"
        )
        print(
            f"zero latency: {per_call_ms:.1f} ms per request, of which transport {baseline * 1000:.1f} ms "
            f"(same client and server, concurrency {args.concurrency})"
        )
        print(f"checkpoint bytes per depth (SQLite): {zero['bytes'] // max(zero['depths'], 1):,}")
        print(f"speedup {speedup:.2f} bound {bound:.2f} overhead_ms {overhead_ms:.1f}")


if __name__ == "__main__":
    main()
