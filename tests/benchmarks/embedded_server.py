"""Benchmark: the embedded llama.cpp server's throughput and reproducibility per setting.

Run: .venv/bin/python tests/benchmarks/embedded_server.py [--model qwen2.5-0.5b] [--requests 8]

Starts the in-process server (``drpo.llm.local_server``) once per configuration (threads per slot,
parallel slots, batch size) and sends the same requests a DRPO depth sends: judge-style prompts that
share a long prefix, temperature 0, a fixed seed each, at a concurrency equal to the slots. Prints
generated tokens per second and wall time per configuration, then reproducibility: the same requests
once more in the reverse order, and each one alone on an idle server; a configuration is reproducible
when all three give the same text for every request (what a run resumed after kill -9 needs).
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from drpo.llm.local_models import resolve_local_model
from drpo.llm.local_server import LocalServer
from drpo.settings import LocalServerSettings

PREFIX = (
    "You are an impartial judge. Rate the answer on each aspect from 1 to 5 and explain first.\n"
    "Aspects: Helpfulness (does it solve the user's problem), Clarity (is it easy to follow), "
    "Factuality (is it correct), Depth (does it cover what matters), Engagement (is it pleasant to read).\n"
    "Reply in JSON with a rationale and a score per aspect.\n\n"
)
QUERIES = [
    "How do I boil an egg so the yolk stays soft?",
    "Explain what a hash map is to a beginner.",
    "Write a haiku about autumn rain.",
    "What causes the seasons on Earth?",
    "Give three tips for a job interview.",
    "Why is the sky blue?",
    "How do vaccines train the immune system?",
    "Summarize the plot of Romeo and Juliet in two sentences.",
    "What is the difference between a list and a tuple in Python?",
    "How can I sleep better?",
]


@dataclass(frozen=True)
class Config:
    threads: int
    parallel: int
    batch: int

    @property
    def label(self) -> str:
        return f"threads {self.threads}, slots {self.parallel}, batch {self.batch}"


def ask(base_url: str, query: str, max_tokens: int) -> tuple[str, int]:
    body = {
        "model": "local",
        "messages": [{"role": "user", "content": PREFIX + f"Query: {query}\nAnswer: (see above)\n"}],
        "temperature": 0,
        "seed": 7,
        "max_tokens": max_tokens,
    }
    request = urllib.request.Request(
        base_url + "/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=600) as response:
        reply = json.loads(response.read())
    return reply["choices"][0]["message"]["content"], int(reply["usage"]["completion_tokens"])


def run_all(base_url: str, queries: list[str], concurrency: int, max_tokens: int) -> tuple[dict[str, str], int, float]:
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        replies = list(pool.map(lambda q: ask(base_url, q, max_tokens), queries))
    wall = time.perf_counter() - started
    return {q: text for q, (text, _) in zip(queries, replies, strict=True)}, sum(t for _, t in replies), wall


def measure(config: Config, model: str, queries: list[str], max_tokens: int) -> dict:
    settings = LocalServerSettings(n_ctx=8192, parallel=config.parallel, threads=config.threads, batch=config.batch)
    server = LocalServer(resolve_local_model(model), settings)
    ask(server.base_url, "warm up", 8)
    texts, tokens, wall = run_all(server.base_url, queries, config.parallel, max_tokens)
    reverse, _, _ = run_all(server.base_url, list(reversed(queries)), config.parallel, max_tokens)
    alone = {q: ask(server.base_url, q, max_tokens)[0] for q in queries}
    del server
    same = sum(texts[q] == reverse[q] == alone[q] for q in queries)
    return {"label": config.label, "tokens_per_s": tokens / wall, "wall": wall, "same": same, "n": len(queries)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="qwen2.5-0.5b")
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument(
        "--configs",
        nargs="+",
        default=["2,2,512", "2,1,512", "1,2,512", "2,2,128", "2,1,128", "2,4,512"],
        help="threads,slots,batch per configuration",
    )
    args = parser.parse_args()
    queries = QUERIES[: args.requests]
    configs = [Config(*map(int, item.split(","))) for item in args.configs]
    print(f"model {args.model}; {len(queries)} judge-style requests, {args.max_tokens} tokens max, temperature 0")
    print(f"{'configuration':<34} {'tok/s':>7} {'wall s':>7} {'reproducible':>13}")
    for config in configs:
        row = measure(config, args.model, queries, args.max_tokens)
        print(f"{row['label']:<34} {row['tokens_per_s']:>7.1f} {row['wall']:>7.1f} {row['same']:>6}/{row['n']}")


if __name__ == "__main__":
    main()
