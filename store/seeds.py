"""Seed queries and base ICL examples: our shipped sets and loaders for the paper's formats.

Formats: Alpaca JSON (list of {"instruction", "input"?}), LIMA JSON (list of {"query"} or
{"conversations": [...]}), plain text (one query a line), JSONL (just-eval's {"instruction"}
or our {"query"}). Query ids are content hashes, so the same file always gives the same ids.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from drpo.errors import DrpoInputError
from drpo.store.files import read_user_text
from drpo.store.icl_store import IclExample, example_id

SeedFormat = Literal["auto", "alpaca", "lima", "text", "jsonl"]


@dataclass(frozen=True)
class SeedQuery:
    id: str
    text: str
    category: str = ""


def query_id(text: str) -> str:
    return "q-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _dedupe(queries: list[SeedQuery]) -> list[SeedQuery]:
    seen: set[str] = set()
    unique = []
    for query in queries:
        if query.id not in seen:
            seen.add(query.id)
            unique.append(query)
    return unique


def _make(text: Any, category: Any = "") -> SeedQuery | None:
    if not isinstance(text, str) or not text.strip():
        return None
    clean = text.strip()
    return SeedQuery(id=query_id(clean), text=clean, category=str(category or ""))


def _from_records(records: list[Any], source: Path) -> list[SeedQuery]:
    queries = []
    for number, record in enumerate(records, start=1):
        if isinstance(record, str):
            made = _make(record)
        elif isinstance(record, dict):
            if "instruction" in record:
                text = record["instruction"]
                extra = record.get("input")
                if isinstance(extra, str) and extra.strip():
                    text = f"{text}\n\n{extra.strip()}"
                made = _make(text, record.get("category", record.get("dataset", "")))
            elif "query" in record:
                made = _make(record["query"], record.get("category", ""))
            elif isinstance(record.get("conversations"), list) and record["conversations"]:
                made = _make(record["conversations"][0], record.get("source", ""))
            else:
                raise DrpoInputError(f"seed file {source}: record {number} has none of instruction/query/conversations")
        else:
            raise DrpoInputError(f"seed file {source}: record {number} is neither text nor an object")
        if made is not None:
            queries.append(made)
    return queries


def load_seed_file(path: Path, fmt: SeedFormat = "auto") -> list[SeedQuery]:
    """Load seed queries from a file in any supported format; errors name the file."""
    text = read_user_text(path, "seed file")
    if fmt == "auto":
        suffix = path.suffix.lower()
        fmt = "jsonl" if suffix == ".jsonl" else "alpaca" if suffix == ".json" else "text"
    if fmt == "text":
        queries = [made for line in text.splitlines() if (made := _make(line)) is not None]
    elif fmt == "jsonl":
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    raise DrpoInputError(f"seed file {path}: line {number} is not valid JSON") from None
        queries = _from_records(records, path)
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise DrpoInputError(f"seed file {path} is not valid JSON (line {error.lineno})") from None
        if not isinstance(data, list):
            raise DrpoInputError(f"seed file {path} must hold a JSON list of queries")
        queries = _from_records(data, path)
    read = len(queries)
    queries = _dedupe(queries)
    if not queries:
        raise DrpoInputError(f"seed file {path} holds no queries")
    if len(queries) < read:  # the same text twice is one query: say so, or a file of repeats looks larger than it is
        logging.getLogger("drpo.seeds").warning(
            "seed file %s: %d repeated queries left out, %d distinct", path, read - len(queries), len(queries)
        )
    return queries


def default_seed_queries() -> list[SeedQuery]:
    """The seed set we wrote for drpo (informative, advice, creative, reasoning, real-time, harmful)."""
    text = resources.files("drpo.store").joinpath("data/seed_queries.jsonl").read_text(encoding="utf-8")
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    return _dedupe([SeedQuery(id=query_id(r["query"]), text=r["query"], category=r["category"]) for r in records])


def _strip_markers(answer: str) -> str:
    """Answers in the reference format are wrapped in <START>/<END>; we store them bare."""
    clean = answer.strip()
    if clean.startswith("<START>"):
        clean = clean[len("<START>") :]
    if clean.endswith("<END>"):
        clean = clean[: -len("<END>")]
    return clean.strip()


def load_icl_file(path: Path) -> list[IclExample]:
    """ICL examples from a JSON dict (query -> answer) or a list of {"query", "answer"}."""
    text = read_user_text(path, "ICL file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise DrpoInputError(f"ICL file {path} is not valid JSON (line {error.lineno})") from None
    if isinstance(data, dict):
        pairs = list(data.items())
    elif isinstance(data, list) and all(isinstance(item, dict) for item in data):
        pairs = [(item.get("query"), item.get("answer")) for item in data]
    else:
        raise DrpoInputError(f"ICL file {path} must be a JSON object or a list of {{query, answer}} objects")
    examples = []
    for query, answer in pairs:
        if not isinstance(query, str) or not isinstance(answer, str) or not query.strip() or not answer.strip():
            raise DrpoInputError(f"ICL file {path}: every example needs a non-empty query and answer")
        examples.append(IclExample(id=example_id(query.strip()), query=query.strip(), answer=_strip_markers(answer)))
    if not examples:
        raise DrpoInputError(f"ICL file {path} holds no examples")
    return examples


def default_icl_examples() -> list[IclExample]:
    """The base ICL set we wrote: half refusals of harmful requests, half informative answers."""
    text = resources.files("drpo.store").joinpath("data/base_icl.json").read_text(encoding="utf-8")
    return [
        IclExample(id=example_id(item["query"]), query=item["query"], answer=item["answer"])
        for item in json.loads(text)
    ]


def split_held_out(
    queries: list[SeedQuery], count: int, seed: int, purpose: str = "held_out"
) -> tuple[list[SeedQuery], list[SeedQuery]]:
    """(rest, set aside): ``count`` queries set aside, spread over the categories in proportion, seeded,
    so the same seed set and seed always set aside the same queries. ``purpose`` names the split in errors
    and keys its random stream (held-out and validation draws are independent of each other)."""
    if count == 0:
        return queries, []
    if count >= len(queries):
        raise DrpoInputError(f"{purpose} {count} leaves no seed query to search ({len(queries)} left in the seed set)")
    rng = random.Random(f"held-out:{seed}" if purpose == "held_out" else f"{purpose}:{seed}")
    by_category: dict[str, list[str]] = {}
    for query in queries:
        by_category.setdefault(query.category, []).append(query.id)
    quotas = {name: count * len(ids) // len(queries) for name, ids in by_category.items()}
    for name in sorted(by_category, key=lambda n: -len(by_category[n]))[: count - sum(quotas.values())]:
        quotas[name] += 1  # the remainder goes to the largest categories
    held = {qid for name, ids in sorted(by_category.items()) for qid in rng.sample(ids, min(quotas[name], len(ids)))}
    return [q for q in queries if q.id not in held], [q for q in queries if q.id in held]


def held_out_records(queries: list[SeedQuery]) -> list[dict[str, str]]:
    """The held-out queries in just-eval's shape; harmful ones are red-team (judged on safety)."""
    return [
        {
            "id": query.id,
            "instruction": query.text,
            "dataset": f"drpo-seeds/{query.category or 'uncategorized'}",
            "category": "red_teaming" if query.category == "harmful" else "regular",
        }
        for query in queries
    ]


def query_order(queries: list[SeedQuery], seed: int) -> list[str]:
    """A seeded, reproducible order of query ids."""
    ids = [query.id for query in queries]
    random.Random(seed).shuffle(ids)
    return ids
