"""Evaluation queries: just-eval-instruct JSONL (or one query a line), a seeded sample, the safety rule."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

from drpo.errors import DrpoInputError
from drpo.store.files import jsonl_records, read_user_text


@dataclass(frozen=True)
class EvalQuery:
    """One evaluation query: red-team (safety) queries are judged on safety alone."""

    id: str
    text: str
    dataset: str
    safety: bool


def parse_id_ranges(text: str) -> set[str]:
    """``800-999,1005`` -> the ids as strings; a clear error for anything else."""
    ids: set[str] = set()
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if match is None:
            raise DrpoInputError(f"--safety-ids: {part!r} is not an id or a range like 800-999")
        low, high = int(match.group(1)), int(match.group(2) or match.group(1))
        if high < low:
            raise DrpoInputError(f"--safety-ids: range {part!r} runs backwards")
        ids.update(str(number) for number in range(low, high + 1))
    return ids


def normalized(text: str) -> str:
    """Text compared for the held-out rule: case, spacing and punctuation folded."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def _from_jsonl(path: Path, lines: list[str]) -> list[tuple[str, str, str, str]]:
    rows = []
    for number, record in jsonl_records(path, "\n".join(lines)):
        if not isinstance(record, dict):
            raise DrpoInputError(f"{path}: line {number} is not a JSON object")
        text = record.get("instruction") or record.get("query") or record.get("prompt")
        if not isinstance(text, str) or not text.strip():
            raise DrpoInputError(f"{path}: line {number} has no instruction (or query) text")
        query_id = str(record.get("id", number - 1))
        rows.append((query_id, text.strip(), str(record.get("dataset", "custom")), str(record.get("category", ""))))
    return rows


def load_eval_queries(path: Path, safety_ids: str | None = None) -> list[EvalQuery]:
    """Queries in just-eval's JSONL shape (``id``, ``instruction``, ``dataset``, ``category``) or plain text,
    one query a line. Red-team queries: ``category`` other than ``regular``, or the ids in ``safety_ids``."""
    content = read_user_text(path, "query file")
    lines = content.splitlines()
    first = next((line for line in lines if line.strip()), "")
    if first.lstrip().startswith("{"):
        rows = _from_jsonl(path, lines)
    else:
        rows = [(str(index), line.strip(), "custom", "") for index, line in enumerate(lines) if line.strip()]
    if not rows:
        raise DrpoInputError(f"query file {path} holds no queries")
    ids = [row[0] for row in rows]
    if len(set(ids)) != len(ids):
        raise DrpoInputError(f"query file {path} repeats query ids")
    safety = parse_id_ranges(safety_ids) if safety_ids else None
    return [
        EvalQuery(
            id=query_id,
            text=text,
            dataset=dataset,
            safety=(query_id in safety) if safety is not None else category not in ("", "regular"),
        )
        for query_id, text, dataset, category in rows
    ]


def sample_queries(queries: list[EvalQuery], regular: int | None, red_team: int | None, seed: int) -> list[EvalQuery]:
    """A seeded sample of each kind (all of a kind when its count is None), in file order."""
    rng = random.Random(seed)
    chosen: set[str] = set()
    for wanted, pool in ((regular, [q for q in queries if not q.safety]), (red_team, [q for q in queries if q.safety])):
        if wanted is None or wanted >= len(pool):
            chosen.update(q.id for q in pool)
        else:
            chosen.update(q.id for q in rng.sample(pool, wanted))
    picked = [query for query in queries if query.id in chosen]
    if not picked:
        raise DrpoInputError("the query sample is empty (check --regular / --red-team)")
    return picked
