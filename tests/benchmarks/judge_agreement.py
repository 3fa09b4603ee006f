"""Judge agreement with GPT-4-turbo for every candidate judge configuration: model tier x template, each
run once with log-probabilities, so written and expected (probability-weighted) scores come from the same
replies. Runs ``drpo eval judge-agreement`` as a whole process per configuration and prints one table.
With ``--pairs N`` it runs ``drpo eval judge-pairs`` instead (ranking accuracy on N pairs of a well-scored
answer and a degraded copy), where ``relative`` (each answer graded against the other) is also a template.

Run: DRPO_SHARED_DATA=../shared/data .venv/bin/python tests/benchmarks/judge_agreement.py [--limit 30]
     [--tiers qwen2.5-0.5b,qwen2.5-1.5b] [--rubrics eval,paper,anchored,eval-split]
     [--pairs 12 --rubrics eval,relative [--kinds padded]] [--sample-seed 1]
(``eval-split``: the eval template, one call per aspect; ``eval-none``: the scores alone, no rationale.)
An interrupted sweep re-run with the same --work directory repeats no finished call (each run's journal).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

from drpo.eval.stats import paired_correlation_difference
from drpo.run.pairs import DEGRADATIONS

DRPO = [sys.executable, "-m", "drpo.cli"]
VERDICTS = "just-eval/gpt4turbo_judged_gpt35.jsonl"
SPLIT = "-split"  # a template name ending so asks one call per aspect (--per-aspect)
NONE = "-none"  # ... and one ending so asks for the scores alone (--rationale none)


def run_one(
    work: Path, data: Path, tier: str, rubric: str, limit: int, pairs: bool = False, kinds: str = "", seed: int = 0
) -> dict:
    named_kinds = f"-{kinds.replace(',', '-')}" if kinds else ""
    named_seed = f"-s{seed}" if seed else ""
    run_id = f"{'pairs' if pairs else 'agree'}-{tier}-{rubric}-{limit}{named_kinds}{named_seed}".replace(".", "")
    saved = work / "runs" / run_id / ("pairs.json" if pairs else "agreement.json")
    if saved.is_file():
        return json.loads(saved.read_text())
    config = work / f"{run_id}.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "runs_dir": str(work / "runs"),
                "local": {"n_ctx": 16384, "parallel": 1, "threads": 2},  # one slot: reproducible replies
                "roles": {"evaluator": {"provider": "local", "model": tier, "max_tokens": 600}},
                "search": {"concurrency": 1},
                "reward": {"scoring": "expected"},
            }
        )
    )
    quiet = rubric.endswith(NONE)
    template = rubric.removesuffix(NONE)
    template, split = template.removesuffix(SPLIT), template.endswith(SPLIT)
    command = [*DRPO, "eval", "judge-pairs" if pairs else "judge-agreement", "--config", str(config),
               "--verdicts", str(data / VERDICTS), "--limit", str(limit), "--rubric", template,
               "--run-id", run_id, "--sample-seed", str(seed), *(["--per-aspect"] if split else []),
               *(["--rationale", "none"] if quiet else []),
               *(["--kinds", kinds] if kinds else [])]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, check=False, env={**os.environ})
    if done.returncode != 0:
        raise SystemExit(f"{tier}/{rubric} failed: {done.stderr.strip()}")
    print(f"  {tier} {rubric}: {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    return json.loads(saved.read_text())


def row(label: str, result: dict, block: str) -> str:
    average = result[block].get("Average", {})
    cells = []
    for key in ("pearson", "spearman", "bias", "within_one"):
        value = average.get(key)
        cells.append("-" if value is None else f"{value:+.2f}" if key == "bias" else f"{value:.2f}")
    interval = average.get("spearman_interval") or [None, None]  # absent in results saved before intervals
    cells.insert(2, "-" if None in interval else f"[{interval[0]:.2f}, {interval[1]:.2f}]")
    text = " | ".join(cells)
    distinct = average.get("distinct", "-")
    return f"| {label} | {text} | {distinct} | {result['parse_failures']} | {result['seconds_per_item']:.1f} |"


def pair_row(label: str, ranking: dict, seconds: float) -> str:
    cells = [f"{ranking[kind]['accuracy']:.2f}" if kind in ranking and ranking[kind]["accuracy"] is not None else "-"
             for kind in ("all", *DEGRADATIONS)]  # fmt: skip
    everything = ranking["all"]
    return f"| {label} | {' | '.join(cells)} | {everything['ties']} | {everything['unusable']} | {seconds:.1f} |"


def paired_lines(measured: list[tuple[str, dict]]) -> list[str]:
    """Each configuration's Spearman minus the first one's, on the items both graded, with a paired
    bootstrap interval: whether a configuration agrees better, not two overlapping intervals."""
    with_items = [(label, result) for label, result in measured if result.get("per_item")]
    if len(with_items) < 2:
        return []
    first_label, first = with_items[0]
    first_items = {item["id"]: item for item in first["per_item"]}
    lines = [
        "",
        f"Spearman on the average minus {first_label}'s (same score kind), on the items both graded, "
        "95% paired bootstrap:",
        "",
        "| judge, template, score | items | difference | 95% CI |",
        "|---|---|---|---|",
    ]
    for label, result in with_items[1:]:
        shared = [item for item in result["per_item"] if item["id"] in first_items]
        for kind, name in (("written", "written"), ("judge", "expected")):
            if not all(kind in item and kind in first_items[item["id"]] for item in shared):
                continue
            difference = paired_correlation_difference(
                [item[kind] for item in shared],
                [first_items[item["id"]][kind] for item in shared],
                [item["reference"] for item in shared],
            )
            ci = "-" if difference.low is None else f"[{difference.low:+.2f}, {difference.high:+.2f}]"
            point = "-" if difference.mean is None else f"{difference.mean:+.2f}"
            lines.append(f"| {label}, {name} | {len(shared)} | {point} | {ci} |")
    return lines


def pair_table(args: argparse.Namespace, data: Path) -> list[str]:
    kinds = f"only {args.kinds}" if args.kinds else "in turn"
    lines = [
        f"Pair ranking on {args.pairs} pairs: a just-eval answer GPT-4-turbo scored >= 4 on average against a "
        "copy cut to its first third, shuffled into one paragraph, reduced to its first sentence and a generic "
        f"line, or padded with a paragraph of generalities ({kinds}); accuracy counts a tie as half.",
        "",
        "| judge, template, score | all | truncated | shuffled | generic | padded | ties | unusable | s/pair |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, result in results(args, data, args.pairs, pairs=True):
        seconds = result["seconds_per_pair"]
        lines.append(pair_row(f"{label}, written", result["written"], seconds))
        lines.append(pair_row(f"{label}, expected", result["ranking"], seconds))
    return lines


def results(args: argparse.Namespace, data: Path, size: int, pairs: bool = False) -> Iterator[tuple[str, dict]]:
    """("tier, template", result) for every configuration asked for, measured or read back."""
    for tier in args.tiers.split(","):
        for rubric in args.rubrics.split(","):
            kinds = args.kinds if pairs else ""
            result = run_one(args.work, data, tier, rubric, size, pairs=pairs, kinds=kinds, seed=args.sample_seed)
            yield f"{tier}, {rubric}", result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=30)
    parser.add_argument("--tiers", default="qwen2.5-0.5b,qwen2.5-1.5b")
    parser.add_argument("--rubrics", default="eval,paper,anchored")
    parser.add_argument("--work", type=Path, default=Path("/tmp/drpo-judge-agreement"))
    parser.add_argument("--pairs", type=int, default=0, help="measure pair ranking on this many pairs instead")
    parser.add_argument("--kinds", default="", help="with --pairs: only these degradations (e.g. padded)")
    parser.add_argument(
        "--sample-seed", type=int, default=0, help="seed of the stratified sample (a fresh one: 1, 2...)"
    )
    args = parser.parse_args()
    data = Path(os.environ.get("DRPO_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
    args.work.mkdir(parents=True, exist_ok=True)
    if args.pairs:
        print("\n".join(pair_table(args, data)))
        return
    lines = [
        f"Agreement with GPT-4-turbo on the average of five aspects, {args.limit} just-eval answers (sample seed "
        f"{args.sample_seed}, stratified: "
        "half scored below 4 by GPT-4-turbo); written = the digit the judge wrote, expected = its "
        "probability-weighted mean over 1-5 in the same reply.",
        "",
        "| judge, template, score | Pearson | Spearman | Spearman 95% CI | bias | within one | distinct averages "
        "| unusable | s/item |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    measured = list(results(args, data, args.limit))
    for label, result in measured:
        lines.append(row(f"{label}, written", result, "written"))
        lines.append(row(f"{label}, expected", result, "aspects"))
    print("\n".join(lines + paired_lines(measured)))


if __name__ == "__main__":
    main()
