"""Benchmark: the aligned runtime's retrieval latency (K=2) and its overhead per request.

Run: PYTHONPATH=tests DRPO_SHARED_DATA=../shared/data .venv/bin/python tests/benchmarks/retrieval_latency.py
Builds Chroma collections of 16 and 1,000 examples (queries from just-eval-instruct), then times
retrieval per request, and the aligned model's per-request overhead over calling the wrapped
(scripted, zero-latency) model directly.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from drpo.serve.aligned import AlignedChatModel
from drpo.store.embeddings import Embedder
from drpo.store.icl_store import IclExample, IclStore, open_chroma_client
from drpo.store.seeds import load_seed_file
from support.scripted import ScriptedChatModel


def timed_ms(action, repeats: int) -> float:
    samples = []
    for index in range(repeats):
        started = time.perf_counter()
        action(index)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def main() -> None:
    shared = Path(os.environ.get("DRPO_SHARED_DATA", "../shared/data"))
    queries = [q.text for q in load_seed_file(shared / "just-eval" / "just_eval_instruct.jsonl")]
    requests, pool = queries[:100], queries[100:]
    embedder = Embedder("packaged:all-minilm-l6-v2")
    embedder.embed(["warm up"])
    with tempfile.TemporaryDirectory() as tmp:
        client = open_chroma_client(Path(tmp))
        for size in (16, 1000):
            store = IclStore(client, f"bench-{size}", embedder)
            store.add([IclExample(f"e{i}", text, f"answer {i}") for i, text in enumerate(pool[:size])])
            latency = timed_ms(lambda i, s=store: s.get(s.nearest_ids(requests[i % 100], 2)), 100)
            print(f"retrieval K=2, {size:>5} examples: median {latency:.2f} ms per request")
            model = ScriptedChatModel()
            aligned = AlignedChatModel(llm=model, system_prompt="Be helpful.", retriever=store, k=2)
            direct = timed_ms(lambda i, m=model: m.invoke(requests[i % 100]), 100)
            wrapped = timed_ms(lambda i, a=aligned: a.invoke(requests[i % 100]), 100)
            print(
                f"aligned overhead, {size:>5} examples: median {wrapped - direct:.2f} ms per request "
                f"(direct {direct:.2f} ms, aligned {wrapped:.2f} ms)"
            )


if __name__ == "__main__":
    main()
