"""Error types that map to CLI exit codes."""

from __future__ import annotations


class DrpoInputError(ValueError):
    """Bad input from the user (config, files, flags, run ids): one clear line, exit code 2."""


class ModelCallError(RuntimeError):
    """A model call failed in a way retries cannot heal (bad credentials, unknown model, unreachable server)."""


class BudgetExhausted(RuntimeError):
    """The run's token or cost budget is used up: it stops cleanly and can resume with a larger budget."""
