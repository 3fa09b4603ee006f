"""Probability-weighted scores (G-Eval style): the expected value of a judge's 1-5 score under the token
probabilities it gave at the score's position, instead of the one digit it happened to write.

The call layer keeps, for each digit token of a reply, the alternatives the server offered at that position
(``DigitAlternatives``: the character offset in the reply and {token: log-probability}); here a score in the
reply's JSON is found by its aspect and turned into an expected score. A reply without log-probabilities
(a provider that gives none, a scripted model) falls back to the written score, and says so.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

from drpo.llm.logprobs import DigitAlternatives, score_digit


def expected_from(options: Mapping[str, float]) -> float | None:
    """The expected score over the digits 1-5 among the alternatives, renormalised; None without any."""
    weights: dict[int, float] = {}
    for token, logprob in options.items():
        digit = score_digit(token)
        if digit is not None and math.isfinite(logprob):
            weights[int(digit)] = weights.get(int(digit), 0.0) + math.exp(logprob)
    total = sum(weights.values())
    if total <= 0:
        return None
    return sum(score * weight for score, weight in weights.items()) / total


def score_offset(text: str, aspect: str) -> int | None:
    """Where the score digit of ``aspect`` sits in a JSON reply ({"Aspect": {"rationale": ..., "score": 4}})."""
    pattern = re.escape(f'"{aspect}"') + r'\s*:\s*\{(?:[^{}"]|"(?:[^"\\]|\\.)*")*?"score"\s*:\s*"?(\d)'
    match = re.search(pattern, text, re.IGNORECASE | re.DOTALL)
    return match.start(1) if match else None


def weigh_written(
    text: str, written: Mapping[str, int | None], alternatives: list[DigitAlternatives]
) -> tuple[dict[str, float | None], int]:
    """The scores to use for a reply's written digits: the expected score where the log-probabilities give
    one, else the digit itself (None, an N/A, stays None); and how many digits had to stand for themselves."""
    numeric = [aspect for aspect, score in written.items() if score is not None]
    expected = expected_scores(text, numeric, alternatives)
    scores: dict[str, float | None] = dict(written)
    scores.update({aspect: round(value, 3) for aspect, value in expected.items() if value is not None})
    return scores, sum(1 for value in expected.values() if value is None)


def expected_scores(
    text: str, aspects: Iterable[str], alternatives: list[DigitAlternatives]
) -> dict[str, float | None]:
    """Expected score per aspect (None where the reply or its log-probabilities do not give one)."""
    by_offset = dict(alternatives)
    scores: dict[str, float | None] = {}
    for aspect in aspects:
        offset = score_offset(text, aspect)
        options = by_offset.get(offset) if offset is not None else None
        scores[aspect] = expected_from(options) if options else None
    return scores
