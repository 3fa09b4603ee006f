"""Benchmark: `drpo serve` under 64 concurrent streaming clients.

Run: PYTHONPATH=tests .venv/bin/python tests/benchmarks/serve_load.py [--clients 64] [--seconds 30] [--latency 0.2]

A finished run (made by `drpo optimize` on the fake upstream) is served by `drpo serve` in its own
process, in front of the fake OpenAI-compatible upstream (its own process too) answering after a
fixed latency. Each client streams one completion after another for a bounded time. The same load
is first sent straight to the upstream, so the figures say what drpo adds: requests completed,
errors (any status but 200, a stream without ``data: [DONE]``, a transport error; the target is 0),
p50/p99 of the whole-request latency straight and through drpo and their difference, and the
server's peak RSS (VmHWM).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from support.cli import DRPO, cli_env, drpo, fake_server_config
from support.fake_openai import fake_server_process

RUN = "load-run"
QUERIES = [
    "How do I keep basil alive on a windowsill?",
    "Explain what a mortgage is to a teenager.",
    "Write a haiku about the sea.",
    "What should I pack for a two-day hike?",
]


@dataclass
class Load:
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def failed(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def one_stream(http: httpx.AsyncClient, url: str, model: str, query: str, load: Load) -> None:
    body = {"model": model, "messages": [{"role": "user", "content": query}], "stream": True}
    began = time.perf_counter()
    try:
        async with http.stream("POST", f"{url}/chat/completions", json=body) as response:
            text = "".join([piece async for piece in response.aiter_text()])
        if response.status_code != 200:
            load.failed(f"HTTP {response.status_code}")
        elif "data: [DONE]" not in text:
            load.failed("no [DONE]")
        else:
            load.latencies.append(time.perf_counter() - began)
    except httpx.HTTPError as error:
        load.failed(type(error).__name__)


async def drive(url: str, model: str, clients: int, seconds: float) -> Load:
    load = Load()
    stop_at = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:

        async def client(index: int) -> None:
            turn = 0
            while time.monotonic() < stop_at:
                await one_stream(http, url, model, QUERIES[(index + turn) % len(QUERIES)], load)
                turn += 1

        await asyncio.gather(*(client(index) for index in range(clients)))
    return load


def start_serve(work: Path) -> tuple[subprocess.Popen[str], str]:
    out = (work / "serve.out").open("w")
    process = subprocess.Popen(
        [*DRPO, "serve", RUN, "--port", "0"], cwd=work, env=cli_env(), stdout=out, stderr=subprocess.DEVNULL, text=True
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = re.search(r"at (http://\S+/v1)", (work / "serve.out").read_text())
        if found:
            return process, found.group(1)
        if process.poll() is not None:
            raise SystemExit("drpo serve exited before serving")
        time.sleep(0.1)
    raise SystemExit("drpo serve did not start")


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(found.group(1)) / 1024 if found else float("nan")


def report(name: str, load: Load, seconds: float) -> None:
    done = len(load.latencies)
    errors = sum(load.errors.values())
    p50 = percentile(load.latencies, 0.5) if done else float("nan")
    p99 = percentile(load.latencies, 0.99) if done else float("nan")
    print(
        f"{name:<9} requests {done:5d} ({done / seconds:6.1f}/s)  errors {errors} {load.errors or ''}  "
        f"p50 {p50 * 1000:7.1f} ms  p99 {p99 * 1000:7.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--latency", type=float, default=0.2, help="the upstream's fixed latency per request")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="drpo-serve-load-") as tmp:
        work = Path(tmp)
        with fake_server_process(args.latency, work / "upstream.jsonl") as upstream:
            config = fake_server_config(work / "config.yaml", upstream, depth=1, beam_width=1, num_actions=2)
            made = drpo("optimize", "--config", str(config), "--run-id", RUN, cwd=work, timeout=600)
            if made.returncode != 0:
                raise SystemExit(f"could not make the run: {made.stderr}")
            direct = asyncio.run(drive(upstream, "fake", args.clients, args.seconds))
            process, url = start_serve(work)
            try:
                asyncio.run(drive(url, RUN, 1, 0.1))  # one warm-up request
                through = asyncio.run(drive(url, RUN, args.clients, args.seconds))
                rss = peak_rss_mb(process.pid)
            finally:
                process.terminate()
                process.wait(timeout=30)
    print(f"{args.clients} streaming clients for {args.seconds:.0f} s, upstream latency {args.latency * 1000:.0f} ms")
    report("upstream", direct, args.seconds)
    report("via drpo", through, args.seconds)
    if direct.latencies and through.latencies:
        for share, name in ((0.5, "p50"), (0.99, "p99")):
            added = percentile(through.latencies, share) - percentile(direct.latencies, share)
            print(f"added by drpo serve, {name}: {added * 1000:.1f} ms")
        print(f"mean latency via drpo: {statistics.mean(through.latencies) * 1000:.1f} ms")
    print(f"drpo serve peak RSS: {rss:.0f} MB")


if __name__ == "__main__":
    main()
