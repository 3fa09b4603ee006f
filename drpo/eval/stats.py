"""Statistics of an evaluation: bootstrap means with 95% intervals (seeded), paired differences,
and the agreement measures between two judges. Pure functions on plain lists."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """A mean with its 95% bootstrap interval (None when there is nothing to average)."""

    mean: float | None
    low: float | None
    high: float | None
    n: int

    def as_dict(self) -> dict[str, float | int | None]:
        return {"mean": self.mean, "low": self.low, "high": self.high, "n": self.n}


def _percentiles(samples: np.ndarray) -> tuple[float, float]:
    alpha = (1 - CONFIDENCE) / 2
    return float(np.quantile(samples, alpha)), float(np.quantile(samples, 1 - alpha))


def bootstrap_mean(values: list[float], iterations: int, seed: int) -> Interval:
    """Mean and percentile-bootstrap interval: resample the values with replacement ``iterations`` times."""
    if not values:
        return Interval(None, None, None, 0)
    data = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(iterations, len(data)))].mean(axis=1)
    low, high = _percentiles(means)
    return Interval(float(data.mean()), low, high, len(data))


def paired_difference(left: list[float], right: list[float], iterations: int, seed: int) -> Interval:
    """Mean of ``left - right`` over the same items, with a paired bootstrap interval (items resampled together)."""
    if len(left) != len(right):
        raise ValueError("paired values need the same items on both sides")
    return bootstrap_mean([a - b for a, b in zip(left, right, strict=True)], iterations, seed)


def _ranks(values: list[float]) -> np.ndarray:
    """Ranks with ties averaged (what Spearman's coefficient needs)."""
    data = np.asarray(values, dtype=float)
    order = data.argsort(kind="mergesort")
    ranks = np.empty(len(data))
    ranks[order] = np.arange(1, len(data) + 1)
    for value in np.unique(data):
        tied = data == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def pearson(x: list[float], y: list[float]) -> float | None:
    """Pearson's r; None when either side is constant (no correlation can be measured)."""
    if len(x) < 2:
        return None
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def spearman(x: list[float], y: list[float]) -> float | None:
    if len(x) < 2:
        return None
    return pearson(list(_ranks(x)), list(_ranks(y)))


def correlation_interval(
    x: list[float],
    y: list[float],
    iterations: int = 2000,
    seed: int = 0,
    measure: Callable[[list[float], list[float]], float | None] = spearman,
) -> tuple[float | None, float | None]:
    """95% percentile-bootstrap interval of a correlation, items resampled as pairs: on 30 items a
    Spearman of 0.56 is compatible with anything from about 0.3 to 0.75, which a bare number hides.
    Resamples where a side is constant (no correlation defined) are left out; (None, None) below 3 items."""
    if len(x) != len(y):
        raise ValueError("a correlation needs the same items on both sides")
    if len(x) < 3:
        return None, None
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    rng = np.random.default_rng(seed)
    values = []
    for picks in rng.integers(0, len(a), size=(iterations, len(a))):
        value = measure(list(a[picks]), list(b[picks]))
        if value is not None:
            values.append(value)
    if not values:
        return None, None
    return _percentiles(np.asarray(values))


def paired_correlation_difference(
    first: list[float], second: list[float], reference: list[float], iterations: int = 2000, seed: int = 0
) -> Interval:
    """Spearman(first, reference) - Spearman(second, reference) over the same items, with a 95% paired
    bootstrap interval (an item's three scores resampled together): whether one judge configuration
    agrees better than another on these items, rather than two overlapping intervals."""
    if not len(first) == len(second) == len(reference):
        raise ValueError("a paired comparison needs the same items from both judges")

    def difference(picks: np.ndarray) -> float | None:
        ref = [reference[i] for i in picks]
        one, two = spearman([first[i] for i in picks], ref), spearman([second[i] for i in picks], ref)
        return None if one is None or two is None else one - two

    point = difference(np.arange(len(first)))
    if point is None or len(first) < 3:
        return Interval(point, None, None, len(first))
    rng = np.random.default_rng(seed)
    values = [
        d
        for picks in rng.integers(0, len(first), size=(iterations, len(first)))
        if (d := difference(picks)) is not None
    ]
    low, high = _percentiles(np.asarray(values)) if values else (None, None)
    return Interval(point, low, high, len(first))


def agreement(judge: list[float], reference: list[float]) -> dict[str, float | int | None]:
    """How a judge's scores compare with a reference judge's on the same items."""
    if len(judge) != len(reference):
        raise ValueError("agreement needs the same items from both judges")
    if not judge:
        return {"n": 0, "pearson": None, "spearman": None, "mae": None, "exact": None, "within_one": None, "bias": None}
    diffs = [a - b for a, b in zip(judge, reference, strict=True)]
    return {
        "n": len(judge),
        "pearson": pearson(judge, reference),
        "spearman": spearman(judge, reference),
        "mae": sum(abs(d) for d in diffs) / len(diffs),
        "exact": sum(1 for a, b in zip(judge, reference, strict=True) if round(a) == round(b)) / len(diffs),
        "within_one": sum(1 for d in diffs if abs(d) <= 1 + 1e-9) / len(diffs),
        "bias": sum(diffs) / len(diffs),
    }


def fmt_interval(interval: dict[str, float | int | None], digits: int = 2) -> str:
    """``4.12 [3.98, 4.25]``, or ``-`` for an empty interval."""
    mean, low, high = interval.get("mean"), interval.get("low"), interval.get("high")
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
