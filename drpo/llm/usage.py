"""Token usage records: what one call or a whole role spent (a leaf module: state, caller and pricing share it)."""

from __future__ import annotations

from typing import TypedDict

# Roughly four characters per token: the estimate used when a provider reports no usage, and for dry runs.
CHARS_PER_TOKEN = 4


class Usage(TypedDict, total=False):
    """Counters of one call or a sum of calls; absent keys count as zero."""

    calls: int
    input_tokens: int
    output_tokens: int
    estimated_calls: int
    cached_calls: int


def empty_usage() -> dict[str, int]:
    return {"calls": 0, "input_tokens": 0, "output_tokens": 0, "estimated_calls": 0}


def add_usage(left: dict[str, int], right: dict[str, int]) -> dict[str, int]:
    return {key: left.get(key, 0) + right.get(key, 0) for key in set(left) | set(right)}


def estimate_tokens(text: str) -> int:
    """Token estimate for text a provider gave no count for."""
    return max(1, len(text) // CHARS_PER_TOKEN)


def total_tokens(usage: dict[str, dict[str, int]]) -> int:
    """Input plus output tokens over every role of a per-role usage mapping."""
    return sum(int(role.get("input_tokens", 0)) + int(role.get("output_tokens", 0)) for role in usage.values())
