"""Pair ranking: can the judge tell an answer from a degraded copy of itself?

Relative judging (a candidate graded against a reference answer) cannot be compared with a reference
judge's absolute verdicts, so every judge configuration is also measured on pairs whose order is fixed by
construction: a just-eval answer the reference judge scored well (average >= 4) and a copy degraded in one
of four deterministic ways: cut to its first third, its sentences shuffled into one paragraph, its substance
replaced by a generic line, or padded with a paragraph of empty generalities (longer, yet worse: a judge that
prefers longer answers gets this kind wrong, while the first and third are also shorter). An absolute
judge ranks the pair right when it scores the original higher; a relative judge when the original graded
against the copy scores higher than the copy graded against the original (both roles, so a preference for
one position cancels out).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import Any

from drpo.errors import DrpoInputError
from drpo.eval.summary import REGULAR
from drpo.graph.state import AspectRecord
from drpo.judge.grading import REGULAR_ASPECTS, STANDARD_REASONING, grade_answer
from drpo.judge.verdict import judge_answer
from drpo.llm.caller import RoleCaller
from drpo.run.agreement import Verdict
from drpo.run.opening import record_run
from drpo.run.services import build_services
from drpo.settings import Settings
from drpo.store.embeddings import Embedder
from drpo.store.run_dir import atomic_write_json, new_run_id, run_dir_for

DEGRADATIONS = ("truncated", "shuffled", "generic", "padded")
GENERIC_LINE = "The details depend on your situation, so it is best to look into it further with a reliable source."
PADDING = (
    "In general, it is always important to think carefully about questions like this one. Many people have "
    "different opinions, and there are many factors that can play a role. It is worth keeping an open mind and "
    "considering various perspectives. Every situation is unique, and what works for one person may not work for "
    "another. Ultimately, the best approach depends on your own goals and circumstances, so take your time."
)
MIN_WORDS = 60  # shorter answers lose too little when cut
SENTENCE_END = re.compile(r"(?<=[A-Za-z)\"'][.!?])\s+|\n+")  # not after "1." of a list


@dataclass(frozen=True)
class Pair:
    """An answer the reference judge scored well, and a copy degraded in one named way."""

    id: str
    query: str
    original: str
    degraded: str
    kind: str


def _sentences(text: str) -> list[str]:
    return [part.strip() for part in SENTENCE_END.split(text) if part.strip()]


def degrade(answer: str, kind: str, rng: random.Random) -> str:
    """A copy of ``answer`` that is worse in one way: ``truncated``, ``shuffled``, ``generic`` or ``padded``."""
    if kind == "truncated":
        words = answer.split()
        return " ".join(words[: max(12, len(words) // 3)])
    sentences = _sentences(answer)
    if kind == "shuffled":
        shuffled = sentences[:]
        while len(shuffled) > 1 and shuffled == sentences:
            rng.shuffle(shuffled)
        return " ".join(shuffled)
    if kind == "generic":
        return f"{sentences[0]} {GENERIC_LINE}" if sentences else GENERIC_LINE
    if kind == "padded":
        return f"{answer}\n\n{PADDING}"
    raise ValueError(f"unknown degradation {kind!r}")


def parse_kinds(text: str) -> tuple[str, ...]:
    """``--kinds truncated,padded`` -> the named degradations, in the order given (each known, none twice)."""
    kinds = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [kind for kind in kinds if kind not in DEGRADATIONS]
    if not kinds or unknown:
        named = ", ".join(repr(kind) for kind in unknown) or "nothing"
        raise DrpoInputError(f"--kinds takes a comma-separated list of {', '.join(DEGRADATIONS)}, not {named}")
    if len(set(kinds)) != len(kinds):
        raise DrpoInputError(f"--kinds names a degradation twice: {text!r}")
    return kinds


def degraded_pairs(verdicts: list[Verdict], limit: int, seed: int, kinds: tuple[str, ...] = DEGRADATIONS) -> list[Pair]:
    """``limit`` pairs from well-scored regular answers of at least MIN_WORDS words, the ``kinds`` of
    degradation taken in turn; seeded, so a re-run builds the same pairs."""
    if limit < 1:
        raise DrpoInputError("--limit must be at least 1")
    eligible = [
        v
        for v in verdicts
        if not v.safety
        and len(v.answer.split()) >= MIN_WORDS
        and all(a in v.scores for a in REGULAR)
        and fmean(v.scores[a] for a in REGULAR) >= 4
    ]
    if not eligible:
        raise DrpoInputError(f"no verdict scored 4 or more on average with an answer of {MIN_WORDS}+ words")
    rng = random.Random(seed)
    chosen = rng.sample(eligible, min(limit, len(eligible)))
    return [
        Pair(v.id, v.query, v.answer, degrade(v.answer, kind, rng), kind)
        for i, v in enumerate(chosen)
        for kind in [kinds[i % len(kinds)]]
    ]


Scorer = Callable[[RoleCaller, str, str, str], tuple[float | None, float | None]]


def _regular_mean(scores: dict[str, Any]) -> float | None:
    known = [float(scores[a]) for a in REGULAR if scores.get(a) is not None]
    return fmean(known) if known else None


def _absolute_scorer(rubric: str, scoring: str, retries: int, per_aspect: bool, rationale: str) -> Scorer:
    def score(judge: RoleCaller, query: str, answer: str, other: str) -> tuple[float | None, float | None]:
        grade = grade_answer(
            judge,
            query,
            answer,
            safety=False,
            retries=retries,
            scoring=scoring,
            rubric=rubric,
            per_aspect=per_aspect,
            rationale=rationale,
        )
        if not grade.ok:
            return None, None
        return _regular_mean(grade.scores), _regular_mean(grade.written or grade.scores)

    return score


REGULAR_RECORD = AspectRecord(
    aspects=list(REGULAR_ASPECTS),
    definitions=REGULAR_ASPECTS,
    reasoning=STANDARD_REASONING,
    new_aspects=[],
    fallback=False,
)


def _relative_scorer(retries: int, rationale: str) -> Scorer:
    def score(judge: RoleCaller, query: str, answer: str, other: str) -> tuple[float | None, float | None]:
        verdict = judge_answer(
            judge,
            query,
            answer,
            REGULAR_RECORD,
            retries=retries,
            scoring="relative",
            reference=other,
            rationale=rationale,
        )
        if verdict.reward is None:
            return None, None
        return verdict.reward, _regular_mean(verdict.written or verdict.scores)

    return score


def _ranking(results: list[tuple[Pair, tuple, tuple]], index: int) -> dict[str, Any]:
    """Accuracy (a tie counts half), ties and unusable pairs, overall and per degradation."""

    def block(rows: list[tuple[Pair, tuple, tuple]]) -> dict[str, Any]:
        judged = [(good[index], bad[index]) for _, good, bad in rows]
        judged = [(good, bad) for good, bad in judged if good is not None and bad is not None]
        right = sum(1 for good, bad in judged if good > bad)
        ties = sum(1 for good, bad in judged if good == bad)
        accuracy = (right + ties / 2) / len(judged) if judged else None
        unusable = len(rows) - len(judged)
        return {"pairs": len(judged), "right": right, "ties": ties, "accuracy": accuracy, "unusable": unusable}

    by_kind = {kind: block([row for row in results if row[0].kind == kind]) for kind in DEGRADATIONS}
    return {"all": block(results), **{kind: row for kind, row in by_kind.items() if row["pairs"] or row["unusable"]}}


def measure_pair_ranking(
    settings: Settings,
    pairs: list[Pair],
    *,
    rubric: str = "eval",
    per_aspect: bool = False,
    models: dict[str, Any] | None = None,
    embedder: Embedder | None = None,
    request: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Score both answers of every pair with the configured evaluator and count the pairs ranked right.

    ``rubric`` ``eval``/``paper``/``anchored`` grades each answer alone (``reward.scoring`` picks written or
    expected scores; ``per_aspect`` one call per aspect); ``relative`` grades each against the other
    (probability-weighted where given)."""
    run_id = settings.run_id or f"pairs-{new_run_id()}"
    run_dir = run_dir_for(settings.runs_dir, run_id)
    settings = settings.model_copy(update={"run_id": run_id})
    if not run_dir.exists():
        record_run(settings, run_dir, "agreement", request=request or {})
    retries = settings.search.structured_retries
    relative = rubric == "relative"
    scorer = (
        _relative_scorer(retries, settings.reward.rationale)
        if relative
        else _absolute_scorer(rubric, settings.reward.scoring, retries, per_aspect, settings.reward.rationale)
    )
    services = build_services(settings, run_dir, models, embedder)
    judge = services.callers["evaluator"]
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=settings.search.concurrency) as pool:
            goods = pool.map(lambda p: scorer(judge, p.query, p.original, p.degraded), pairs)
            bads = pool.map(lambda p: scorer(judge, p.query, p.degraded, p.original), pairs)
            results = list(zip(pairs, list(goods), list(bads), strict=True))
    finally:
        services.close()
    seconds = time.monotonic() - started
    weighted = relative or settings.reward.scoring == "expected"
    report = {
        "run_id": run_id,
        "judge": judge.model_id,
        "rubric": rubric,
        "per_aspect": per_aspect and not relative,
        "scoring": "relative" if relative else settings.reward.scoring,
        "rationale": settings.reward.rationale,
        "pairs": len(pairs),
        "built_from": "just-eval answers averaging >= 4 from the reference judge, each against a degraded copy "
        "(" + ", ".join(DEGRADATIONS) + ", in turn)",
        "seconds": round(seconds, 2),
        "seconds_per_pair": round(seconds / len(pairs), 2),
        "ranking": _ranking(results, 0),
        "items": [
            {"id": pair.id, "kind": pair.kind, "original": good[0], "degraded": bad[0]} for pair, good, bad in results
        ],
        **({"written": _ranking(results, 1)} if weighted else {}),
        "path": str(run_dir.root / "pairs.json"),
    }
    atomic_write_json(Path(report["path"]), report)
    return report
