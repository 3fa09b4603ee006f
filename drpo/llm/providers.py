"""Role factory: a RoleSpec becomes a LangChain model (ChatOpenAI or OpenAI completions), and for chat roles
the route drpo's own lean client sends their requests by (``drpo.llm.chat_client``).

The embedded local server, OpenAI, vLLM, Ollama and llama.cpp servers all go through the
same OpenAI-compatible client, so switching providers changes configuration only.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from drpo.errors import DrpoInputError
from drpo.llm.chat_client import OPENAI_BASE_URL, ChatCompletionsClient, LeanRoute, lean_client_unusable
from drpo.llm.local_models import resolve_local_model
from drpo.llm.local_server import LocalServerPool
from drpo.llm.retry import RateLimiter
from drpo.settings import ROLE_NAMES, RoleSpec, Settings
from drpo.store.redaction import register_secret

if TYPE_CHECKING:  # typing only: importing LangChain's model classes costs a third of a second
    from langchain_core.language_models import BaseLanguageModel


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


def _endpoint(role: str, spec: RoleSpec, pool: LocalServerPool) -> tuple[str | None, str, str]:
    """Where a role's requests go: the server's base URL (None: the SDK's default), the model name, the key."""
    if spec.provider == "local":
        return pool.base_url_for(resolve_local_model(spec.model)), "local", "local"
    return spec.base_url, spec.model, _api_key(role, spec)


def _sampling(spec: RoleSpec) -> dict[str, Any]:
    """The role's sampling parameters, as both clients send them."""
    params: dict[str, Any] = {"temperature": spec.temperature, "max_tokens": spec.max_tokens}
    if spec.frequency_penalty:
        params["frequency_penalty"] = spec.frequency_penalty
    return params


def build_role_model(role: str, spec: RoleSpec, pool: LocalServerPool) -> BaseLanguageModel:
    """A LangChain model for one role."""
    from langchain_openai import ChatOpenAI, OpenAI

    base_url, model_name, api_key = _endpoint(role, spec, pool)
    common: dict[str, Any] = {
        "model": model_name,
        "api_key": api_key,
        **_sampling(spec),
        "timeout": spec.timeout,
        "max_retries": 0,  # drpo retries transient errors itself (drpo.llm.retry), counting them
    }
    if base_url:
        common["base_url"] = base_url
    if spec.mode == "completion":
        return OpenAI(**common)
    return ChatOpenAI(**common)


def build_lean_route(role: str, spec: RoleSpec, pool: LocalServerPool) -> LeanRoute | None:
    """The role's requests through drpo's own chat client, or None where ChatOpenAI must send them
    (completion models; a proxy, tracing or OpenAI organisation settings: ``lean_client_unusable``)."""
    if spec.mode != "chat":
        return None
    base_url, model_name, api_key = _endpoint(role, spec, pool)
    if lean_client_unusable(base_url):
        return None
    client = ChatCompletionsClient(base_url or OPENAI_BASE_URL, api_key, spec.timeout)
    return LeanRoute(client, model_name, _sampling(spec))


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
