"""Token log-probabilities of a reply, kept small: only the alternatives at digit tokens (where a judge writes
its scores), with their character offsets in the reply. ``drpo.judge.expected`` turns them into scores."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

SCORE_DIGITS = ("1", "2", "3", "4", "5")
TOP_LOGPROBS = 5

DigitAlternatives = tuple[int, dict[str, float]]  # (character offset in the reply, {token: log-probability})
PADDING = " \t\r\n\"':,"  # what a tokenizer may glue to a score digit (JSON quotes, colons, newlines)


def score_digit(token: str) -> str | None:
    """The score digit a token stands for ("4", ' "4', ":\n\n4"), or None."""
    digit = token.strip(PADDING)
    return digit if digit in SCORE_DIGITS else None


def digit_alternatives(text: str, logprobs: Iterable[Mapping[str, Any]]) -> list[DigitAlternatives]:
    """For every generated token that is a score digit, its offset in ``text`` and the alternatives offered.

    ``logprobs`` is OpenAI's ``choices[0].logprobs.content``: tokens in order, whose texts concatenate to the
    reply. Only digit positions are kept, so a journal record stays small."""
    found: list[DigitAlternatives] = []
    offset = 0
    for entry in logprobs:
        token = str(entry.get("token", ""))
        digit = score_digit(token)
        if digit is not None and text.startswith(token, offset):
            position = offset + token.index(digit)
            options = {
                str(o.get("token", "")): float(o.get("logprob", -math.inf)) for o in entry.get("top_logprobs", [])
            }
            options.setdefault(token, float(entry.get("logprob", 0.0)))
            found.append((position, options))
        offset += len(token)
    return found
