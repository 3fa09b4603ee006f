"""Token prices and budgets: what a run has spent, and whether it may spend more."""

from __future__ import annotations

import threading
from typing import Any

from drpo.errors import BudgetExhausted
from drpo.settings import PriceSpec, Settings


def price_for(role: str, settings: Settings) -> PriceSpec | None:
    """The role's price; local models cost nothing; None when no price is configured."""
    spec = settings.roles.get(role)
    if spec.provider == "local":
        return PriceSpec(input_per_million=0.0, output_per_million=0.0)
    return settings.prices.get(spec.model)


def call_cost(role: str, usage: dict[str, int], settings: Settings) -> float | None:
    price = price_for(role, settings)
    if price is None:
        return None
    spent_in = usage.get("input_tokens", 0) * price.input_per_million
    spent_out = usage.get("output_tokens", 0) * price.output_per_million
    return (spent_in + spent_out) / 1_000_000


def cost_of(usage_by_role: dict[str, dict[str, int]], settings: Settings) -> dict[str, Any] | None:
    """Dollars per role and in total, or None when some role used has no price."""
    by_role: dict[str, float] = {}
    for role, usage in sorted(usage_by_role.items()):
        cost = call_cost(role, usage, settings)
        if cost is None:
            return None
        by_role[role] = round(cost, 6)
    return {"by_role": by_role, "total": round(sum(by_role.values()), 6)}


class BudgetGuard:
    """Counts what a run spends (including before a resume) and refuses calls past its budget."""

    def __init__(self, settings: Settings, spent_by_role: dict[str, dict[str, int]]) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self.tokens = 0
        self.cost = 0.0
        for role, usage in spent_by_role.items():
            self._add(role, usage)

    def _add(self, role: str, usage: dict[str, int]) -> None:
        self.tokens += usage.get("input_tokens", 0) + usage.get("output_tokens", 0)
        self.cost += call_cost(role, usage, self._settings) or 0.0

    def add(self, role: str, usage: dict[str, int]) -> None:
        with self._lock:
            self._add(role, usage)

    def check(self) -> None:
        """Raise before a new call once the budget is used up."""
        budget = self._settings.budget
        with self._lock:
            if budget.max_tokens is not None and self.tokens >= budget.max_tokens:
                raise BudgetExhausted(f"token budget used up ({self.tokens:,} of {budget.max_tokens:,} tokens)")
            if budget.max_cost is not None and self.cost >= budget.max_cost:
                raise BudgetExhausted(f"cost budget used up (${self.cost:.4f} of ${budget.max_cost:.4f})")
