"""Benchmark: `drpo optimize` as a whole process, from start to exit, against a fake server.

Run: PYTHONPATH=tests .venv/bin/python tests/benchmarks/whole_process.py [--repeats 3] [--latency 0.2]

The paper's configuration (W=2, M=3, D=20, K=2, no depth increase), concurrency 8, against the fake
OpenAI-compatible server in its own process with a fixed latency per request, the way a user runs it:
``drpo optimize --config FILE`` in a fresh interpreter. Three situations:

- ``n`` cold: the optimizer's M samples in one request (``sample_with_n`` left to the probe), a new
  store directory (no embedding cache, no n-probe remembered);
- ``n`` warm: the same, with the store of an earlier run (embeddings and the probe remembered);
- no ``n``: ``sample_with_n: false`` forced, warm store.

For each: requests by role (from the server's log), whole-process wall time, time from start to the
first request, the search span (first request start to last reply end), time from the last reply to
exit (the n probe, one request on a server not seen before, goes out beside start-up and is not the
first search request), the critical-path bound (its requests times the latency) and the span's share of it. A last
run at zero latency gives drpo's own time per request, and a minimal client replaying the warm run's rounds on
the same server shows the span the server and the wire allow on their own. The reference implementation's figures
(Singla17/DRPO, measured on this machine kind, ../shared/docs/drpo-reference.md) are printed above
as the yardstick. Medians over ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from support.cli import cli_env, fake_server_config
from support.fake_openai import fake_server_process
from support.responder import EVAL_TASK, TRANSITION_TASK

REFERENCE = {"requests": 276, "wall": 66.7, "startup": 5.5, "exit": 1.35}
TASK_ROLE = {"aspects": "aspect_selector", "answer": "base", "evaluate": "evaluator", "transition": "optimizer"}


@dataclass
class Timing:
    wall: float
    startup: float
    span: float
    after: float
    requests: Counter[str]
    depths: int
    best: str


def run_once(root: Path, name: str, latency: float, store: Path, use_n: bool | None, depth: int) -> Timing:
    log = root / f"{name}.requests.jsonl"
    with fake_server_process(latency, log) as base_url:
        config = fake_server_config(
            root / f"{name}.yaml", base_url, depth=depth, concurrency=8, max_depth_increase=0, icl_k=2
        )
        data = yaml.safe_load(config.read_text())
        data["store_dir"] = str(store)
        if use_n is not None:
            data["roles"]["optimizer"]["sample_with_n"] = use_n
        config.write_text(yaml.safe_dump(data))
        command = [sys.executable, "-m", "drpo.cli", "optimize", "--config", str(config)]
        command += ["--runs-dir", str(root / "runs"), "--run-id", name]
        started = time.time()
        finished = subprocess.run(command, env=cli_env(), capture_output=True, text=True, check=False)
        ended = time.time()
    if finished.returncode != 0:
        raise SystemExit(f"{name}: drpo optimize exited {finished.returncode}: {finished.stderr.strip()[-400:]}")
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    search = [entry for entry in entries if entry.get("task") != "probe"]  # the n probe runs beside start-up
    first = min(entry["start"] for entry in search)
    last = max(entry["end"] for entry in search)
    result = json.loads((root / "runs" / name / "result.json").read_text())
    return Timing(
        wall=ended - started,
        startup=first - started,
        span=last - first,
        after=ended - last,
        requests=Counter(TASK_ROLE.get(entry.get("task", ""), entry.get("task", "?")) for entry in entries),
        depths=int(result["depths_run"]),
        best=str(result["best_prompt"]),
    )


def logged_rounds(log: Path) -> list[list[str]]:
    """The search's rounds in a run's request log: the tasks of requests that were in flight together."""
    entries = sorted(
        (entry for entry in map(json.loads, log.read_text().splitlines()) if entry.get("task") != "probe"),
        key=lambda entry: entry["start"],
    )
    rounds: list[list[dict[str, Any]]] = []
    for entry in entries:
        if rounds and entry["start"] < max(other["end"] for other in rounds[-1]):
            rounds[-1].append(entry)
        else:
            rounds.append([entry])
    return [[str(entry.get("task", "answer")) for entry in group] for group in rounds]


MINIMAL_BODY_TEXT = {  # the smallest prompts the fake server answers as each task (tests/support/responder.py)
    "evaluate": f"{EVAL_TASK}\n<output>\nAn answer.\n</output>\n## Aspects to rate\n- Helpfulness: h\n- Clarity: c",
    "transition": f"{TRANSITION_TASK}\n<current_system_prompt>\nYou are a helpful assistant.\n</current_system_prompt>",
    "answer": "Explain recursion briefly.",
}


def minimal_client_span(root: Path, rounds: list[list[str]], latency: float) -> float:
    """The same rounds, sent by about the smallest client there is (http.client, a thread per request, the
    next round as soon as the last reply is read): the span the server and the wire allow on their own,
    the floor any client meets on this server."""
    log = root / f"minimal-{time.time_ns()}.requests.jsonl"
    with fake_server_process(latency, log) as base_url:
        host, port = base_url.split("//")[1].split("/")[0].split(":")

        def send(task: str) -> None:
            text = MINIMAL_BODY_TEXT.get(task, MINIMAL_BODY_TEXT["answer"])
            body = json.dumps({"model": "m", "seed": 0, "messages": [{"role": "user", "content": text}]})
            connection = http.client.HTTPConnection(host, int(port))
            connection.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
            connection.getresponse().read()
            connection.close()

        for tasks in rounds:
            threads = [threading.Thread(target=send, args=(task,)) for task in tasks]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    return max(entry["end"] for entry in entries) - min(entry["start"] for entry in entries)


def median_timing(timings: list[Timing]) -> dict[str, Any]:
    return {
        "wall": statistics.median(t.wall for t in timings),
        "startup": statistics.median(t.startup for t in timings),
        "span": statistics.median(t.span for t in timings),
        "after": statistics.median(t.after for t in timings),
        "requests": timings[0].requests,
        "depths": timings[0].depths,
        "same_result": len({t.best for t in timings}) == 1,
    }


def critical_requests(depths: int) -> int:
    """Per depth aspect selection overlapping generation, then evaluation; one transition round between depths."""
    return depths * 2 + (depths - 1)


def row(label: str, figures: dict[str, Any], latency: float) -> str:
    requests = figures["requests"]
    bound = critical_requests(figures["depths"]) * latency
    share = f"{bound / figures['span']:.0%}" if figures["span"] else "-"
    speedup = REFERENCE["wall"] / figures["wall"]
    by_role = " ".join(f"{role.split('_')[0][:4]}={count}" for role, count in sorted(requests.items()))
    return (
        f"{label:<14} {sum(requests.values()):>5} {figures['wall']:>7.1f} {figures['startup']:>7.2f} "
        f"{figures['span']:>7.1f} {figures['after']:>6.2f} {bound:>6.1f} {share:>6} {speedup:>6.1f}x  {by_role}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    situations: dict[str, list[Timing]] = {"n, cold store": [], "n, warm store": [], "no n, warm": []}
    zero: list[Timing] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for repeat in range(args.repeats):
            cold = root / f"store-{repeat}"
            situations["n, cold store"].append(run_once(root, f"cold{repeat}", args.latency, cold, None, args.depth))
            situations["n, warm store"].append(run_once(root, f"warm{repeat}", args.latency, cold, None, args.depth))
            situations["no n, warm"].append(run_once(root, f"non{repeat}", args.latency, cold, False, args.depth))
            zero.append(run_once(root, f"zero{repeat}", 0.0, cold, None, args.depth))
        rounds = logged_rounds(root / "warm0.requests.jsonl")
        floors = [minimal_client_span(root, rounds, args.latency) for _ in range(args.repeats)]
    shape = f"W=2 M=3 D={args.depth} K=2 I=0"
    print(f"latency {args.latency * 1000:.0f} ms per request; {shape}; medians of {args.repeats}")
    columns = ("reqs", 5), ("wall s", 7), ("first", 7), ("search", 7), ("exit", 6), ("bound", 6), ("share", 6)
    header = f"{'run':<14} " + " ".join(f"{name:>{width}}" for name, width in columns) + f" {'vs ref':>7}"
    print(header + "  requests by role")
    print(
        f"{'reference':<14} {REFERENCE['requests']:>5} {REFERENCE['wall']:>7.1f} {REFERENCE['startup']:>7.2f} "
        f"{'63.5':>7} {REFERENCE['exit']:>6.2f} {'':>6} {'':>6} {'1.0x':>7}  one request in flight"
    )
    figures = {label: median_timing(timings) for label, timings in situations.items()}
    for label, value in figures.items():
        print(row(label, value, args.latency))
    zero_figures = median_timing(zero)
    per_request = zero_figures["span"] / max(sum(zero_figures["requests"].values()), 1) * 1000
    print(
        f"zero latency: whole process {zero_figures['wall']:.1f} s, search {zero_figures['span']:.2f} s "
        f"= {per_request:.1f} ms of drpo's own time per request (concurrency 8)"
    )
    floor = statistics.median(floors)
    bound = critical_requests(figures["n, warm store"]["depths"]) * args.latency
    print(
        f"minimal client, the warm run's {len(rounds)} rounds on the same server: search {floor:.2f} s "
        f"= {bound / floor:.0%} of the bound (what the server and the wire allow; drpo warm: "
        f"{figures['n, warm store']['span']:.2f} s)"
    )
    print("same best prompt in every repeat: " + ", ".join(f"{k}: {v['same_result']}" for k, v in figures.items()))
    if args.json:
        payload = {k: {**v, "requests": dict(v["requests"])} for k, v in {**figures, "zero": zero_figures}.items()}
        args.json.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
