"""One plain sentence per paired difference, so a reader who does not read intervals still gets the verdict."""

from __future__ import annotations

from typing import Any


def difference_sentence(system: str, baseline: str, interval: dict[str, Any], what: str = "average score") -> str:
    """What a paired difference's 95% interval says: a measured gain, a measured loss, or no difference
    measured (the interval holds 0, so the data cannot tell the two apart)."""
    mean, low, high, n = interval.get("mean"), interval.get("low"), interval.get("high"), interval.get("n", 0)
    if mean is None or low is None or high is None:
        return f"{system} vs {baseline}: no {what} difference could be computed (no query graded for both)."
    span = f"{mean:+.2f} [{low:+.2f}, {high:+.2f}] on {n} queries"
    if low > 0:
        return f"{system} scored higher than {baseline} ({what} {span}): the whole 95% interval is above 0, a gain."
    if high < 0:
        return f"{system} scored lower than {baseline} ({what} {span}): the whole 95% interval is below 0, a loss."
    return (
        f"No difference measured between {system} and {baseline} ({what} {span}): the 95% interval holds 0, so "
        "these queries cannot tell them apart; more held-out queries would narrow it."
    )
