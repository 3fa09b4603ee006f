"""Benchmark: does an embedded llama.cpp server's reply depend on what it served before?

Run: .venv/bin/python tests/benchmarks/embedded_determinism.py [--model smollm2-135m] [--history 6]

A resumed run sends its next request to a fresh server; the unbroken run sent the same request to a
server that had served the run's earlier requests. If the reply differs, resume is not exact. For each
server configuration (one option varied at a time) this sends a target request to a fresh server, and
the same target after ``--history`` earlier requests that share its prefix (the way a search's answer
and judge calls share their template) to another fresh server, at temperature 0 with a fixed seed. It
prints whether the two replies are equal, the largest difference in the chosen tokens' log-probability
over the first tokens, and the seconds the warm server took for the whole sequence.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from drpo.llm.local_models import resolve_local_model

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Variant:
    name: str
    server: dict[str, Any] = field(default_factory=dict)  # CommonParams attributes
    request: dict[str, Any] = field(default_factory=dict)  # extra request fields


VARIANTS = [
    Variant("llama.cpp defaults (drpo today)"),
    Variant("cache_prompt false per request", request={"cache_prompt": False}),
    Variant("cache_prompt false on the server", server={"cache_prompt": False}),
    Variant("host prompt cache off (cache_ram_mib 0)", server={"cache_ram_mib": 0}),
    Variant("n_cache_reuse 256", server={"n_cache_reuse": 256}),
    Variant("batch/ubatch 64", server={"n_batch": 64, "n_ubatch": 64}),
    Variant("threads 1", server={"threads": 1}),
    Variant(
        "cache_prompt false + host cache off",
        server={"cache_prompt": False, "cache_ram_mib": 0},
        request={"cache_prompt": False},
    ),  # fmt: skip
]


def start_server(model_path: Path, options: dict[str, Any]) -> Any:
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(model_path)
    params.n_ctx = 8192
    params.n_parallel = 1
    threads = int(options.get("threads", os.cpu_count() or 2))
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    for key, value in options.items():
        if key != "threads":
            setattr(params, key, value)
    params.verbosity = -1
    params.port = 0
    params.hostnames = ["127.0.0.1"]
    return xllamacpp.Server(params)


def requests_sharing_a_prefix(history: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Chat requests like a search's: one system prompt and examples, then a different query each."""
    examples = json.loads((ROOT / "store" / "data" / "base_icl.json").read_text())[:2]
    queries = [json.loads(line)["query"] for line in (ROOT / "store" / "data" / "seed_queries.jsonl").open()]
    shots: list[dict[str, str]] = []
    for example in examples:
        shots += [{"role": "user", "content": example["query"]}, {"role": "assistant", "content": example["answer"]}]
    system = {"role": "system", "content": "You are a helpful, honest assistant. Answer clearly and completely."}

    def request(query: str) -> dict[str, Any]:
        return {"messages": [system, *shots, {"role": "user", "content": query}]}

    return [request(query) for query in queries[:history]], request(queries[history])


def ask(client: httpx.Client, url: str, body: dict[str, Any], extra: dict[str, Any]) -> tuple[str, list[float]]:
    payload = {
        **body, "model": "local", "temperature": 0.0, "seed": 7, "max_tokens": 96, "logprobs": True,
        "top_logprobs": 1, **extra,
    }  # fmt: skip
    reply = client.post(f"{url}/chat/completions", json=payload, timeout=600).json()
    choice = reply["choices"][0]
    chosen = [item["logprob"] for item in (choice.get("logprobs") or {}).get("content") or []]
    return choice["message"]["content"], chosen


def compare(model_path: Path, variant: Variant, history: int) -> dict[str, Any]:
    earlier, target = requests_sharing_a_prefix(history)
    with httpx.Client() as client:
        fresh = start_server(model_path, variant.server)
        cold_text, cold_lp = ask(client, f"{fresh.listening_address}/v1", target, variant.request)
        del fresh
        warm = start_server(model_path, variant.server)
        url = f"{warm.listening_address}/v1"
        began = time.perf_counter()
        for body in earlier:
            ask(client, url, body, variant.request)
        warm_text, warm_lp = ask(client, url, target, variant.request)
        seconds = time.perf_counter() - began
        del warm
    shared = min(len(cold_lp), len(warm_lp), 32)
    drift = max((abs(a - b) for a, b in zip(cold_lp[:shared], warm_lp[:shared], strict=True)), default=0.0)
    return {"variant": variant.name, "equal": cold_text == warm_text, "max_logprob_diff": drift, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--history", type=int, default=6)
    parser.add_argument("--only", default="", help="comma-separated variant numbers (1-based)")
    args = parser.parse_args()
    model_path = resolve_local_model(args.model)
    chosen = [VARIANTS[int(n) - 1] for n in args.only.split(",") if n] or VARIANTS
    print(f"model {args.model}, {args.history} earlier requests sharing the target's prefix, temperature 0")
    print(f"{'configuration':<42} {'same reply':>10} {'max |dlogprob|':>15} {'warm s':>8}")
    for variant in chosen:
        row = compare(model_path, variant, args.history)
        same = "yes" if row["equal"] else "NO"
        print(f"{row['variant']:<42} {same:>10} {row['max_logprob_diff']:>15.2e} {row['seconds']:>8.1f}")


if __name__ == "__main__":
    main()
