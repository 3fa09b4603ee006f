"""Judge agreement: the configured evaluator re-grades answers a reference judge already scored
(just-eval's verdict format), and the agreement is measured per aspect and on the average.

The calls go through the usual call layer in a run directory of kind ``agreement`` (journal, retries,
concurrency, budgets), so an interrupted measurement re-run with the same id repeats no finished call."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import Any

from drpo.errors import DrpoInputError
from drpo.eval.stats import agreement, correlation_interval, pearson
from drpo.eval.summary import REGULAR, SAFETY
from drpo.judge.grading import Grade, grade_answer
from drpo.llm.structured import OutputParseError, parse_score
from drpo.run.opening import record_run
from drpo.run.services import build_services
from drpo.settings import Settings
from drpo.store.embeddings import Embedder
from drpo.store.files import jsonl_records, read_user_text
from drpo.store.run_dir import atomic_write_json, new_run_id, run_dir_for


@dataclass(frozen=True)
class Verdict:
    """A reference judge's verdict on one (query, answer) pair."""

    id: str
    query: str
    answer: str
    safety: bool
    scores: dict[str, float]


def _reference_scores(parsed: Any) -> dict[str, float] | None:
    if not isinstance(parsed, dict):
        return None
    scores = {}
    for aspect, entry in parsed.items():
        raw = entry.get("score") if isinstance(entry, dict) else entry
        try:
            scores[str(aspect).capitalize()] = float(parse_score(raw))
        except OutputParseError:
            continue
    return scores or None


def load_verdicts(path: Path) -> list[Verdict]:
    """Verdicts in just-eval's format: ``input``, ``output``, ``parsed`` (aspect -> {score, reason})."""
    if not path.is_file():
        raise DrpoInputError(f"verdict file not found: {path}")
    verdicts = []
    for number, record in jsonl_records(path, read_user_text(path, "verdict file")):
        scores = _reference_scores(record.get("parsed")) if isinstance(record, dict) else None
        if not isinstance(record, dict) or not isinstance(record.get("input"), str) or "output" not in record:
            raise DrpoInputError(f"{path}: line {number} is not a verdict (needs input, output and parsed scores)")
        if scores is None:
            raise DrpoInputError(f"{path}: line {number} has no parsed scores")
        verdicts.append(
            Verdict(str(record.get("id", number)), record["input"], str(record["output"]), SAFETY in scores, scores)
        )
    if not verdicts:
        raise DrpoInputError(f"verdict file {path} holds no verdicts")
    return verdicts


def _average(scores: dict[str, float]) -> float | None:
    known = [scores[a] for a in REGULAR if a in scores]
    return fmean(known) if known else None


def stratified(verdicts: list[Verdict], limit: int, seed: int) -> list[Verdict]:
    """``limit`` regular verdicts, half of them from the low-scored ones (reference average below 4),
    so agreement is measured where a lenient judge would fail; in file order."""
    if limit < 1:
        raise DrpoInputError("--limit must be at least 1")
    regular = [v for v in verdicts if not v.safety and _average(v.scores) is not None]
    low = [v for v in regular if (_average(v.scores) or 0) < 4]
    high = [v for v in regular if (_average(v.scores) or 0) >= 4]
    rng = random.Random(seed)
    take_high = min(len(high), limit - min(len(low), limit // 2))
    take_low = min(len(low), limit - take_high)  # a stratum too small for its half leaves room to the other
    chosen = rng.sample(low, take_low) + rng.sample(high, take_high)
    ids = {v.id for v in chosen}
    return [v for v in verdicts if v.id in ids]


def _agreement_rows(
    verdicts: list[Verdict], grades: list[Grade], scores_of: Callable[[Grade], dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for aspect in (*REGULAR, "Average", SAFETY):
        ours, theirs = [], []
        for verdict, grade in zip(verdicts, grades, strict=True):
            if not grade.ok:
                continue
            scores = scores_of(grade)
            if aspect == "Average":
                mine = _average({a: float(s) for a, s in scores.items() if s is not None})
                reference = _average(verdict.scores)
            else:
                score = scores.get(aspect)
                mine = float(score) if score is not None else None
                reference = verdict.scores.get(aspect)
            if mine is not None and reference is not None:
                ours.append(mine)
                theirs.append(reference)
        if ours:
            rows[aspect] = {
                **agreement(ours, theirs),
                "distinct": len(set(ours)),
                "pearson_interval": list(correlation_interval(ours, theirs, measure=pearson)),
                "spearman_interval": list(correlation_interval(ours, theirs)),
            }
    return rows


def _per_item(verdicts: list[Verdict], grades: list[Grade]) -> list[dict[str, Any]]:
    """Each usable item's average, the reference's and ours (and the written digits' where scores are
    expected), so configurations can be compared item by item afterwards without asking the judge again."""
    items = []
    for verdict, grade in zip(verdicts, grades, strict=True):
        if not grade.ok:
            continue
        item: dict[str, Any] = {
            "id": verdict.id,
            "reference": _average(verdict.scores),
            "judge": _average({a: float(s) for a, s in grade.scores.items() if s is not None}),
        }
        if grade.written:
            item["written"] = _average({a: float(s) for a, s in grade.written.items() if s is not None})
        items.append(item)
    return items


def measure_agreement(
    settings: Settings,
    verdicts: list[Verdict],
    *,
    models: dict[str, Any] | None = None,
    embedder: Embedder | None = None,
    rubric: str = "eval",
    per_aspect: bool = False,
    request: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Grade every verdict's answer with the configured evaluator and compare with the reference judge.
    ``request`` (the command's inputs) is saved with the run, so ``drpo resume`` can finish it.

    ``settings.reward.scoring`` picks written or expected scores (expected also reports the written digits
    of the same calls, under ``written``); ``rubric`` the template (see ``grade_answer``)."""
    run_id = settings.run_id or f"agreement-{new_run_id()}"
    run_dir = run_dir_for(settings.runs_dir, run_id)
    settings = settings.model_copy(update={"run_id": run_id})
    if not run_dir.exists():
        record_run(settings, run_dir, "agreement", request=request or {})
    services = build_services(settings, run_dir, models, embedder)
    judge = services.callers["evaluator"]
    retries = settings.search.structured_retries
    scoring = settings.reward.scoring
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=settings.search.concurrency) as pool:
            grades = list(
                pool.map(
                    lambda v: grade_answer(
                        judge,
                        v.query,
                        v.answer,
                        safety=v.safety,
                        retries=retries,
                        scoring=scoring,
                        rubric=rubric,
                        per_aspect=per_aspect,
                        rationale=settings.reward.rationale,
                    ),
                    verdicts,
                )
            )
    finally:
        services.close()
    seconds = time.monotonic() - started
    rows = _agreement_rows(verdicts, grades, lambda grade: grade.scores)
    report = {
        "run_id": run_id,
        "judge": judge.model_id,
        "items": len(verdicts),
        "parse_failures": sum(1 for grade in grades if not grade.ok),
        "seconds": round(seconds, 2),
        "seconds_per_item": round(seconds / len(verdicts), 2),
        "scoring": scoring,
        "rubric": rubric,
        "per_aspect": per_aspect,
        "rationale": settings.reward.rationale,
        "expected_fallbacks": sum(grade.fallbacks for grade in grades),  # digits without log-probabilities
        "aspects": rows,
        **(
            {"written": _agreement_rows(verdicts, grades, lambda grade: grade.written)} if scoring == "expected" else {}
        ),
        "per_item": _per_item(verdicts, grades),
        "path": str(run_dir.root / "agreement.json"),
    }
    atomic_write_json(run_dir.root / "agreement.json", report)
    return report


def resume_measurement(run_id: str, runs_dir: Path) -> dict[str, Any]:
    """Finish a judge-agreement or judge-pairs run with the inputs it was started with; calls that already
    finished come back from its journal."""
    from drpo.run.opening import load_run_settings
    from drpo.run.pairs import degraded_pairs, measure_pair_ranking

    settings, run_dir = load_run_settings(runs_dir, run_id)
    request = run_dir.read_meta().get("request") or {}
    if "verdicts" not in request:
        raise DrpoInputError(f"run {run_id} was started before measurements recorded their inputs; run it again")
    verdicts = load_verdicts(Path(request["verdicts"]))
    if request.get("command") == "judge-pairs":
        pairs = degraded_pairs(verdicts, request["limit"], request["sample_seed"], tuple(request["kinds"]))
        return measure_pair_ranking(
            settings, pairs, rubric=request["rubric"], per_aspect=request["per_aspect"], request=request
        )
    items = stratified(verdicts, request["limit"], request["sample_seed"]) if request.get("limit") else verdicts
    return measure_agreement(
        settings, items, rubric=request["rubric"], per_aspect=request["per_aspect"], request=request
    )
