"""Role factory: a RoleSpec becomes a LangChain model (ChatOpenAI or OpenAI completions).

The embedded local server, OpenAI, vLLM, Ollama and llama.cpp servers all go through the
same OpenAI-compatible client, so switching providers changes configuration only.
"""

from __future__ import annotations

import os
from typing import Any

from langchain_core.language_models import BaseLanguageModel

from drpo.errors import DrpoInputError
from drpo.llm.local_models import resolve_local_model
from drpo.llm.local_server import LocalServerPool
from drpo.llm.retry import RateLimiter
from drpo.settings import ROLE_NAMES, RoleSpec, Settings
from drpo.store.redaction import register_secret


def model_identity(spec: RoleSpec) -> str:
    """A stable name for the model behind a role (journal and cache keys, logs); never holds secrets.

    The server address is left out on purpose: a run resumed against the same model served
    elsewhere (another port or machine) must find its finished calls and derive the same seeds."""
    return f"{spec.provider}:{spec.model}"


def check_api_key(role: str, spec: RoleSpec) -> None:
    """Refuse a role whose key variable is unset, before a run is created for it."""
    _api_key(role, spec)


def _api_key(role: str, spec: RoleSpec) -> str:
    env_name = spec.key_env_name()
    if env_name is None:
        return "not-needed"
    value = os.environ.get(env_name)
    if not value:
        raise DrpoInputError(f"role {role} ({spec.provider}): environment variable {env_name} is not set")
    register_secret(value)
    return value


def build_role_model(role: str, spec: RoleSpec, pool: LocalServerPool) -> BaseLanguageModel:
    """A LangChain model for one role."""
    from langchain_openai import ChatOpenAI, OpenAI

    if spec.provider == "local":
        base_url: str | None = pool.base_url_for(resolve_local_model(spec.model))
        model_name = "local"
        api_key = "local"
    else:
        base_url = spec.base_url
        model_name = spec.model
        api_key = _api_key(role, spec)
    common: dict[str, Any] = {
        "model": model_name,
        "api_key": api_key,
        "temperature": spec.temperature,
        "max_tokens": spec.max_tokens,
        "timeout": spec.timeout,
        "max_retries": 0,  # drpo retries transient errors itself (drpo.llm.retry), counting them
    }
    if base_url:
        common["base_url"] = base_url
    if spec.frequency_penalty:
        common["frequency_penalty"] = spec.frequency_penalty
    if spec.mode == "completion":
        return OpenAI(**common)
    return ChatOpenAI(**common)


def server_key(spec: RoleSpec) -> tuple[str, str]:
    """Roles on the same server share its rate limit."""
    return spec.provider, spec.base_url or spec.provider


def shared_rate_limiters(settings: Settings) -> dict[tuple[str, str], RateLimiter]:
    """One limiter per server, at the strictest requests-per-minute any role on it asks for."""
    limits: dict[tuple[str, str], float] = {}
    for role in ROLE_NAMES:
        spec = settings.roles.get(role)
        if spec.requests_per_minute is not None:
            key = server_key(spec)
            limits[key] = min(limits.get(key, spec.requests_per_minute), spec.requests_per_minute)
    return {key: RateLimiter(per_minute) for key, per_minute in limits.items()}
