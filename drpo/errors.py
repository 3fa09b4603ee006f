"""Error types that map to CLI exit codes."""

from __future__ import annotations


class DrpoInputError(ValueError):
    """Bad input from the user (config, files, flags, run ids): one clear line, exit code 2."""


class ModelCallError(RuntimeError):
    """A model call failed in a way retries cannot heal (bad credentials, unknown model, unreachable server)."""


class BudgetExhausted(RuntimeError):
    """The run's token or cost budget is used up: it stops cleanly and can resume with a larger budget."""


class ProviderUnavailable(RuntimeError):
    """A provider kept failing with errors that usually heal (429, 5xx, timeouts) after every retry:
    the run stops failed, naming the role and provider, and resumes later where it stopped."""


class SearchStalled(RuntimeError):
    """A role's output stayed unusable for a whole depth (or too large a share of it): the run stops failed,
    naming the role, its provider and the last error, and resumes once the provider is fixed."""
