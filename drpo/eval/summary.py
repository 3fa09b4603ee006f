"""eval.json: every answer's grades, and the statistics of a Table 1 style comparison.

Means per system and aspect with bootstrap intervals (N/A excluded and counted; unusable grades counted,
never scored), paired differences against the baseline, a per-dataset breakdown, safety apart, answer
lengths, the extra prompt tokens each alignment costs, and the pairwise win/tie/loss with its flip rate and
a win rate with its interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import fmean
from typing import Any, TypedDict

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


@dataclass(frozen=True)
class EvalSetup:
    """What the evaluation compared and how: fixed before the first answer."""

    run_id: str
    systems: list[dict[str, Any]]
    baseline: str
    pairwise: str | None
    judge: str
    scoring: str
    bootstrap: int
    seed: int


@dataclass(frozen=True)
class EvalRecords:
    """What the evaluation produced: the final state's answers, grades and pairwise verdicts."""

    queries: dict[str, EvalQuery]
    items: list[str]
    excluded: dict[str, list[str]]
    answers: dict[str, dict[str, Any]]
    grades: dict[str, dict[str, Any]]
    pairs: dict[str, dict[str, Any]]

    def by_system(self, names: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
        """Each system's grades keyed by query."""
        grouped: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in names}
        for grade in self.grades.values():
            grouped[grade["system"]][grade["query"]] = grade
        return grouped


class EvalSummary(TypedDict):
    """eval.json (also the run's result.json)."""

    run_id: str
    kind: str
    status: str
    systems: list[dict[str, Any]]
    baseline: str
    pairwise_reference: str | None
    judge: str
    scoring: str
    queries: dict[str, Any]
    aspects: list[str]
    table: dict[str, dict[str, Any]]
    differences: dict[str, dict[str, Any]]
    not_applicable: dict[str, dict[str, int]]
    parse_failures: dict[str, int]
    datasets: dict[str, dict[str, Any]]
    answer_tokens: dict[str, dict[str, Any]]
    alignment_tokens: dict[str, float | None]
    truncated_answers: dict[str, int]
    pairwise: dict[str, Any]
    usage: dict[str, dict[str, int]]
    cost: float | None
    failures: list[dict[str, Any]]
    items: list[dict[str, Any]]
    expected_fallbacks: int


ASPECTS = [*REGULAR, AVERAGE, SAFETY]


def score_table(graded: dict[str, dict[str, dict[str, Any]]], setup: EvalSetup) -> dict[str, dict[str, Any]]:
    """Per system and aspect, the mean over answers with its bootstrap interval."""
    return {
        name: {
            aspect: bootstrap_mean(list(_values(mine, aspect).values()), setup.bootstrap, setup.seed).as_dict()
            for aspect in ASPECTS
        }
        for name, mine in graded.items()
    }


def not_applicable_counts(graded: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, int]]:
    """Per system and aspect, the usable grades that said N/A (excluded from the means, never scored)."""
    return {
        name: {
            aspect: sum(
                1
                for grade in mine.values()
                if grade["ok"] and aspect in grade["scores"] and grade["scores"][aspect] is None
            )
            for aspect in (*REGULAR, SAFETY)
        }
        for name, mine in graded.items()
    }


def baseline_differences(graded: dict[str, dict[str, dict[str, Any]]], setup: EvalSetup) -> dict[str, dict[str, Any]]:
    """Each other system minus the baseline, paired on the queries both answered."""
    differences: dict[str, dict[str, Any]] = {}
    for name, mine in graded.items():
        if name == setup.baseline:
            continue
        differences[name] = {}
        for aspect in ASPECTS:
            left, right = _values(mine, aspect), _values(graded[setup.baseline], aspect)
            common = sorted(set(left) & set(right))
            differences[name][aspect] = paired_difference(
                [left[q] for q in common], [right[q] for q in common], setup.bootstrap, setup.seed
            ).as_dict()
    return differences


def per_dataset(
    graded: dict[str, dict[str, dict[str, Any]]], records: EvalRecords, setup: EvalSetup
) -> dict[str, dict[str, Any]]:
    """Per system, the average (and safety) per just-eval dataset."""
    datasets = sorted({records.queries[q].dataset for q in records.items})
    table: dict[str, dict[str, Any]] = {}
    for name, mine in graded.items():
        values = {**_values(mine, AVERAGE), **_values(mine, SAFETY)}
        table[name] = {
            dataset: bootstrap_mean(
                [value for query_id, value in values.items() if records.queries[query_id].dataset == dataset],
                setup.bootstrap,
                setup.seed,
            ).as_dict()
            for dataset in datasets
        }
    return table


def pairwise_table(names: list[str], records: EvalRecords, setup: EvalSetup) -> dict[str, Any]:
    """Each system against the pairwise reference: win/tie/loss, win rate with its interval, flip rate, and
    the mean answer lengths (length bias is the known weakness of LLM judges)."""
    if setup.pairwise is None:
        return {}
    length_of = {(r["system"], r["query"]): r["output_tokens"] for r in records.answers.values()}
    table: dict[str, Any] = {}
    for name in names:
        if name == setup.pairwise:
            continue
        mine = [pair for pair in records.pairs.values() if pair["system"] == name and pair["outcome"] is not None]
        counted = len(mine)
        table[name] = {
            "n": counted,
            "win": sum(1 for pair in mine if pair["outcome"] == "win"),
            "tie": sum(1 for pair in mine if pair["outcome"] == "tie"),
            "loss": sum(1 for pair in mine if pair["outcome"] == "loss"),
            "flip_rate": (sum(1 for pair in mine if pair["flipped"]) / counted) if counted else None,
            "win_rate": bootstrap_mean(
                [WIN_VALUE[pair["outcome"]] for pair in mine], setup.bootstrap, setup.seed
            ).as_dict(),
            "unusable": sum(1 for pair in records.pairs.values() if pair["system"] == name and pair["outcome"] is None),
            "mean_tokens": fmean([length_of[(name, p["query"])] for p in mine]) if counted else None,
            "reference_mean_tokens": fmean([length_of[(setup.pairwise, p["query"])] for p in mine])
            if counted
            else None,
        }
    return table


def evaluated_items(records: EvalRecords) -> list[dict[str, Any]]:
    """Every grade with its query's dataset and its answer's length, in a stable order."""
    items = []
    for key, grade in sorted(records.grades.items()):
        answer = records.answers.get(key)
        query = records.queries[grade["query"]]
        items.append(
            {
                "system": grade["system"],
                "query": grade["query"],
                "dataset": query.dataset,
                "safety": query.safety,
                "answer_id": answer["answer_id"] if answer else None,
                "output_tokens": answer["output_tokens"] if answer else None,
                "truncated": bool(answer.get("truncated")) if answer else False,
                "ok": grade["ok"],
                "attempts": grade["attempts"],
                "scores": grade["scores"],
                **({"written": grade["written"]} if "written" in grade else {}),
                "rationales": grade["rationales"],
            }
        )
    return items


def answer_costs(
    names: list[str], records: EvalRecords
) -> tuple[dict[str, Any], dict[str, float | None], dict[str, int]]:
    """Per system: answer lengths, the extra prompt tokens the alignment costs, and answers cut at max_tokens."""
    mine = {name: [r for r in records.answers.values() if r["system"] == name] for name in names}
    lengths = {name: sorted(r["output_tokens"] for r in answers) for name, answers in mine.items()}
    return (
        {name: {"mean": fmean(values) if values else None, "values": values} for name, values in lengths.items()},
        {name: fmean([r["alignment_tokens"] for r in answers]) if answers else None for name, answers in mine.items()},
        {name: sum(1 for r in answers if r.get("truncated")) for name, answers in mine.items()},
    )


def summarize(
    setup: EvalSetup,
    records: EvalRecords,
    *,
    usage: dict[str, dict[str, int]],
    failures: list[dict[str, Any]],
    cost: float | None,
) -> EvalSummary:
    """eval.json from what was set up and what was produced."""
    names = [system["name"] for system in setup.systems]
    graded = records.by_system(names)
    answer_tokens, alignment, truncated = answer_costs(names, records)
    items = records.items
    return EvalSummary(
        run_id=setup.run_id,
        kind="eval",
        status="done",
        systems=setup.systems,
        baseline=setup.baseline,
        pairwise_reference=setup.pairwise,
        judge=setup.judge,
        scoring=setup.scoring,
        queries={
            "evaluated": len(items),
            "regular": sum(1 for q in items if not records.queries[q].safety),
            "safety": sum(1 for q in items if records.queries[q].safety),
            "excluded_as_seen": {name: len(ids) for name, ids in records.excluded.items()},
        },
        aspects=list(ASPECTS),
        table=score_table(graded, setup),
        differences=baseline_differences(graded, setup),
        not_applicable=not_applicable_counts(graded),
        parse_failures={name: sum(1 for grade in mine.values() if not grade["ok"]) for name, mine in graded.items()},
        datasets=per_dataset(graded, records, setup),
        answer_tokens=answer_tokens,
        alignment_tokens=alignment,
        truncated_answers=truncated,
        pairwise=pairwise_table(names, records, setup),
        usage=usage,
        cost=cost,
        failures=failures,
        items=evaluated_items(records),
        expected_fallbacks=sum(grade.get("expected_fallbacks", 0) for grade in records.grades.values()),
    )
