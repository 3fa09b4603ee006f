"""eval.json: every answer's grades, and the statistics of a Table 1 style comparison.

Means per system and aspect with bootstrap intervals (N/A excluded and counted; unusable grades counted,
never scored), paired differences against the baseline, a per-dataset breakdown, safety apart, answer
lengths, the extra prompt tokens each alignment costs, and the pairwise win/tie/loss with its flip rate and
a win rate with its interval.
"""

from __future__ import annotations

from statistics import fmean
from typing import Any

from drpo.eval.queries import EvalQuery
from drpo.eval.stats import bootstrap_mean, paired_difference

REGULAR = ("Helpfulness", "Clarity", "Factuality", "Depth", "Engagement")
AVERAGE = "Average"
SAFETY = "Safety"
WIN_VALUE = {"win": 1.0, "tie": 0.5, "loss": 0.0}  # a win rate counts a tie as half a win (as AlpacaEval does)


def _average(scores: dict[str, float | None]) -> float | None:
    known = [score for aspect, score in scores.items() if aspect in REGULAR and score is not None]
    return fmean(known) if known else None


def _values(grades: dict[str, dict[str, Any]], aspect: str) -> dict[str, float]:
    """query id -> the score on ``aspect`` (or the per-answer average), only where there is one."""
    found: dict[str, float] = {}
    for query_id, grade in grades.items():
        if not grade["ok"]:
            continue
        value = _average(grade["scores"]) if aspect == AVERAGE else grade["scores"].get(aspect)
        if value is not None:
            found[query_id] = float(value)
    return found


def summarize(
    *,
    run_id: str,
    systems: list[dict[str, Any]],
    queries: dict[str, EvalQuery],
    items: list[str],
    excluded: dict[str, list[str]],
    answers: dict[str, dict[str, Any]],
    grades: dict[str, dict[str, Any]],
    pairs: dict[str, dict[str, Any]],
    baseline: str,
    pairwise: str | None,
    bootstrap: int,
    seed: int,
    usage: dict[str, dict[str, int]],
    failures: list[dict[str, Any]],
    judge: str,
    cost: float | None,
    scoring: str = "absolute",
) -> dict[str, Any]:
    names = [system["name"] for system in systems]
    by_system: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in names}
    for grade in grades.values():
        by_system[grade["system"]][grade["query"]] = grade
    aspects = [*REGULAR, AVERAGE, SAFETY]
    table: dict[str, dict[str, Any]] = {}
    differences: dict[str, dict[str, Any]] = {}
    not_applicable: dict[str, dict[str, int]] = {}
    for name in names:
        mine = by_system[name]
        table[name] = {
            aspect: bootstrap_mean(list(_values(mine, aspect).values()), bootstrap, seed).as_dict()
            for aspect in aspects
        }
        not_applicable[name] = {
            aspect: sum(
                1
                for grade in mine.values()
                if grade["ok"] and aspect in grade["scores"] and grade["scores"][aspect] is None
            )
            for aspect in (*REGULAR, SAFETY)
        }
        if name != baseline:
            differences[name] = {}
            for aspect in aspects:
                left, right = _values(mine, aspect), _values(by_system[baseline], aspect)
                common = sorted(set(left) & set(right))
                differences[name][aspect] = paired_difference(
                    [left[q] for q in common], [right[q] for q in common], bootstrap, seed
                ).as_dict()
    datasets = sorted({queries[q].dataset for q in items})
    per_dataset = {
        name: {
            dataset: bootstrap_mean(
                [
                    value
                    for query_id, value in {
                        **_values(by_system[name], AVERAGE),
                        **_values(by_system[name], SAFETY),
                    }.items()
                    if queries[query_id].dataset == dataset
                ],
                bootstrap,
                seed,
            ).as_dict()
            for dataset in datasets
        }
        for name in names
    }
    lengths = {
        name: sorted(record["output_tokens"] for record in answers.values() if record["system"] == name)
        for name in names
    }
    alignment = {
        name: fmean(costs)
        if (costs := [r["alignment_tokens"] for r in answers.values() if r["system"] == name])
        else None
        for name in names
    }
    pairwise_table: dict[str, Any] = {}
    if pairwise is not None:
        for name in names:
            if name == pairwise:
                continue
            mine_pairs = [pair for pair in pairs.values() if pair["system"] == name and pair["outcome"] is not None]
            counted = len(mine_pairs)
            length_of = {(r["system"], r["query"]): r["output_tokens"] for r in answers.values()}
            pairwise_table[name] = {
                "n": counted,
                "win": sum(1 for pair in mine_pairs if pair["outcome"] == "win"),
                "tie": sum(1 for pair in mine_pairs if pair["outcome"] == "tie"),
                "loss": sum(1 for pair in mine_pairs if pair["outcome"] == "loss"),
                "flip_rate": (sum(1 for pair in mine_pairs if pair["flipped"]) / counted) if counted else None,
                "win_rate": bootstrap_mean(
                    [WIN_VALUE[pair["outcome"]] for pair in mine_pairs], bootstrap, seed
                ).as_dict(),
                "unusable": sum(1 for pair in pairs.values() if pair["system"] == name and pair["outcome"] is None),
                "mean_tokens": fmean([length_of[(name, p["query"])] for p in mine_pairs]) if counted else None,
                "reference_mean_tokens": fmean([length_of[(pairwise, p["query"])] for p in mine_pairs])
                if counted
                else None,
            }
    evaluated = [
        {
            "system": grade["system"],
            "query": grade["query"],
            "dataset": queries[grade["query"]].dataset,
            "safety": queries[grade["query"]].safety,
            "answer_id": answers[key]["answer_id"] if key in answers else None,
            "output_tokens": answers[key]["output_tokens"] if key in answers else None,
            "truncated": bool(answers[key].get("truncated")) if key in answers else False,
            "ok": grade["ok"],
            "attempts": grade["attempts"],
            "scores": grade["scores"],
            **({"written": grade["written"]} if "written" in grade else {}),
            "rationales": grade["rationales"],
        }
        for key, grade in sorted(grades.items())
    ]
    return {
        "run_id": run_id,
        "kind": "eval",
        "status": "done",
        "systems": systems,
        "baseline": baseline,
        "pairwise_reference": pairwise,
        "judge": judge,
        "scoring": scoring,
        "queries": {
            "evaluated": len(items),
            "regular": sum(1 for q in items if not queries[q].safety),
            "safety": sum(1 for q in items if queries[q].safety),
            "excluded_as_seen": {name: len(ids) for name, ids in excluded.items()},
        },
        "aspects": aspects,
        "table": table,
        "differences": differences,
        "not_applicable": not_applicable,
        "parse_failures": {name: sum(1 for g in by_system[name].values() if not g["ok"]) for name in names},
        "datasets": per_dataset,
        "answer_tokens": {name: {"mean": fmean(v) if v else None, "values": v} for name, v in lengths.items()},
        "alignment_tokens": alignment,
        "truncated_answers": {
            name: sum(1 for r in answers.values() if r["system"] == name and r.get("truncated")) for name in names
        },
        "pairwise": pairwise_table,
        "usage": usage,
        "cost": cost,
        "failures": failures,
        "items": evaluated,
        "expected_fallbacks": sum(grade.get("expected_fallbacks", 0) for grade in grades.values()),
    }
