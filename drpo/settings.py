"""Run configuration: one pydantic model, loadable from YAML, overridable by CLI flags.

Secrets never live here: a role names the *environment variable* holding its API key.
"""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from drpo.errors import DrpoInputError
from drpo.store.files import read_user_text
from drpo.store.postgres import is_postgres_dsn
from drpo.store.redaction import KEY_SHAPES
from drpo.store.run_dir import default_store_dir

Provider = Literal["local", "openai", "openai_compatible"]
ROLE_NAMES: tuple[str, ...] = ("base", "optimizer", "evaluator", "aspect_selector")
DEFAULT_LOCAL_MODEL = "qwen2.5-0.5b"


def check_checkpointer(value: str) -> None:
    """sqlite, memory or a Postgres DSN; a DSN must not carry a password, since settings are saved with the run."""
    if value in ("sqlite", "memory"):
        return
    if not is_postgres_dsn(value):
        raise ValueError("checkpointer must be sqlite, memory or a postgresql:// DSN")
    parsed = urlsplit(value)
    if parsed.password or "password=" in (parsed.query or ""):
        raise ValueError(
            "put the Postgres password in PGPASSWORD or ~/.pgpass, not in the DSN (it is saved with the run)"
        )
    if not parsed.hostname and "host=" not in (parsed.query or ""):
        raise ValueError("the Postgres DSN needs a host")


def is_env_var_name(value: str) -> bool:
    """An environment variable's name, and not a key pasted in its place (sk-..., gsk_..., xai-...,
    or a long mixed string like a token)."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        return False
    if re.match(r"(?i)(sk|gsk|xai|pk|rk)[-_]", value) or len(value) > 64:
        return False
    mixed = any(c.islower() for c in value) and any(c.isupper() for c in value) and any(c.isdigit() for c in value)
    return not (mixed and len(value) >= 20)


SECRET_QUERY_NAMES = re.compile(r"(key|token|secret|password|passwd|auth|signature|sig|credential)", re.IGNORECASE)


def has_credentials(url: str) -> bool:
    """A user, a password, or a query value that names or looks like a secret (``?key=sk-...``): a URL
    saved with the run must not carry any of them."""
    parsed = urlsplit(url)
    if parsed.username or parsed.password:
        return True
    for name, value in parse_qsl(parsed.query, keep_blank_values=True):
        if SECRET_QUERY_NAMES.search(name) or KEY_SHAPES.search(value):
            return True
    return False


def parse_chroma_url(url: str) -> tuple[str, int, bool]:
    """(host, port, ssl) of a Chroma server URL."""
    if has_credentials(url):
        raise ValueError("chroma_url must not contain a user, a password or a key (it is saved with the run)")
    parsed = urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError("chroma_url must look like http://host:port")
    port = parsed.port or (443 if parsed.scheme == "https" else 8000)
    return parsed.hostname, port, parsed.scheme == "https"


DEFAULT_RUNS_DIR = Path("drpo_runs")  # the one default, for the settings and every CLI command


class RoleSpec(BaseModel):
    """How one role (base, optimizer, evaluator, aspect_selector) reaches its model."""

    model_config = ConfigDict(extra="forbid")

    provider: Provider = Field("local", description="local (embedded llama.cpp), openai, or openai_compatible")
    model: str = Field(
        DEFAULT_LOCAL_MODEL,
        description="Model name; for provider local a packaged model name or a path to a GGUF file",
    )
    base_url: str | None = Field(None, description="Server URL for openai_compatible (vLLM, Ollama, llama.cpp)")
    api_key_env: str | None = Field(
        None, description="Name of the environment variable holding the API key (never the key itself)"
    )
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="Sampling temperature")
    frequency_penalty: float = Field(
        0.0, ge=-2.0, le=2.0, description="OpenAI's frequency_penalty: above 0 small models loop less"
    )
    max_tokens: int = Field(800, ge=16, le=32768, description="Longest reply in tokens; a longer one is cut")
    mode: Literal["chat", "completion"] = Field("chat", description="Base role only: chat or completion model")
    json_schema: bool | None = Field(
        None, description="Send a JSON schema response_format on structured calls (default: on for local)"
    )
    sample_with_n: bool | None = Field(
        None, description="Ask for M optimizer samples in one request with n (default: on for openai)"
    )
    timeout: float = Field(600.0, gt=0, description="Seconds without a byte from the server before retrying")
    deadline: float = Field(
        900.0, gt=0, description="Seconds one request may take in all, even while bytes trickle in, before retrying"
    )
    max_retries: int = Field(4, ge=0, le=20, description="Retries of transient errors (429, 5xx, timeouts)")
    retry_base_delay: float = Field(0.5, ge=0, le=60, description="First backoff delay in seconds (doubles)")
    retry_max_delay: float = Field(30.0, ge=0, le=600, description="Longest backoff delay in seconds")
    requests_per_minute: float | None = Field(
        None, gt=0, description="Limit on request starts per minute, shared by roles on the same server"
    )

    @model_validator(mode="after")
    def _check_provider(self) -> RoleSpec:
        if self.provider == "openai_compatible" and not self.base_url:
            raise ValueError("provider openai_compatible needs base_url")
        if self.api_key_env is not None and not is_env_var_name(self.api_key_env):
            raise ValueError("api_key_env must be an environment variable name (e.g. OPENAI_API_KEY), not a key")
        if self.base_url is not None and has_credentials(self.base_url):
            raise ValueError(
                "base_url must not contain a user, a password or a key (it is saved with the run); use api_key_env"
            )
        return self

    def uses_json_schema(self) -> bool:
        """Constrained JSON output: the default for the embedded server, where it makes small models reliable."""
        return self.json_schema if self.json_schema is not None else self.provider == "local"

    def uses_n(self) -> bool:
        return self.sample_with_n if self.sample_with_n is not None else self.provider == "openai"

    def probes_n(self) -> bool:
        """Whether ``n`` support is found out by a probe (an OpenAI-compatible server, setting unset)
        instead of being known from the settings (``uses_n``)."""
        return self.provider == "openai_compatible" and self.sample_with_n is None

    def key_env_name(self) -> str | None:
        """Environment variable to read the key from, if the provider needs one."""
        if self.api_key_env:
            return self.api_key_env
        return "OPENAI_API_KEY" if self.provider == "openai" else None


ROLE_DEFAULTS: dict[str, dict[str, Any]] = {
    "base": {"temperature": 0.0, "max_tokens": 320},
    "optimizer": {"temperature": 0.7, "max_tokens": 1200},
    "evaluator": {"temperature": 0.0, "max_tokens": 800},
    "aspect_selector": {"temperature": 0.0, "max_tokens": 800},
}


class RolesSettings(BaseModel):
    """The four DRPO roles. A role given partially keeps its role-specific defaults for the rest."""

    model_config = ConfigDict(extra="forbid")

    base: RoleSpec = Field(default_factory=lambda: RoleSpec(**ROLE_DEFAULTS["base"]))
    optimizer: RoleSpec = Field(default_factory=lambda: RoleSpec(**ROLE_DEFAULTS["optimizer"]))
    evaluator: RoleSpec = Field(default_factory=lambda: RoleSpec(**ROLE_DEFAULTS["evaluator"]))
    aspect_selector: RoleSpec = Field(default_factory=lambda: RoleSpec(**ROLE_DEFAULTS["aspect_selector"]))

    @model_validator(mode="before")
    @classmethod
    def _fill_role_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        return {
            role: {**ROLE_DEFAULTS[role], **value} if role in ROLE_DEFAULTS and isinstance(value, dict) else value
            for role, value in data.items()
        }

    @model_validator(mode="after")
    def _only_base_completes(self) -> RolesSettings:
        for name in ROLE_NAMES[1:]:
            if getattr(self, name).mode != "chat":
                raise ValueError(f"roles.{name}.mode: only the base role can be a completion model")
        return self

    def get(self, role: str) -> RoleSpec:
        if role not in ROLE_NAMES:
            raise KeyError(role)
        return getattr(self, role)


class SearchSettings(BaseModel):
    """Beam-search shape. Defaults are the small embedded demo; examples/paper.yaml has the paper's."""

    model_config = ConfigDict(extra="forbid")

    beam_width: int = Field(2, ge=1, le=64, description="W: candidates kept after each depth")
    num_actions: int = Field(2, ge=1, le=16, description="M: new prompts the optimizer proposes per beam node")
    depth: int = Field(3, ge=1, le=200, description="D: depths (the first depth scores the initial prompt)")
    max_depth_increase: int = Field(1, ge=0, le=100, description="I: extra depths granted by skipped levels")
    path_aggregator: Literal["mean", "last"] = Field("mean", description="How a path's rewards rank it")
    queries_per_depth: int = Field(1, ge=1, le=64, description="B: seed queries scored per depth (1 = paper)")
    icl_k: int = Field(2, ge=0, le=16, description="K: retrieved in-context examples per query")
    seed: int = Field(42, description="Seeds the query order and per-call sampling seeds")
    concurrency: int = Field(2, ge=1, le=256, description="Cap on model calls in flight")
    skip_threshold: float = Field(4.5, ge=1.0, le=5.0, description="Mean score above which a node is kept as is")
    prompt_history: int = Field(5, ge=1, le=50, description="Path prompts the optimizer sees")
    structured_retries: int = Field(2, ge=0, le=10, description="Re-asks after unparseable judge/optimizer output")
    max_unusable_share: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Stop the run failed when more than this share of a depth's verdicts stays unusable "
        "(a depth with none usable always stops it; for failed proposals see stall_patience)",
    )
    stall_patience: int = Field(
        1,
        ge=1,
        le=100,
        description="Depths in a row whose proposals may all fail before the run stops as stalled "
        "(meanwhile the beam is carried on to new queries)",
    )
    initial_prompt: str = Field(
        "You are a helpful assistant.", min_length=1, description="The system prompt the search starts from"
    )
    review: bool = Field(False, description="Pause after each depth's pruning for a human review of the beam")
    strategy: Literal["beam", "greedy", "mc"] = Field(
        "beam",
        description="beam (DRPO), greedy (W=1), or mc (Monte Carlo: as many prompts, all one step from the start)",
    )
    max_prompt_tokens: int | None = Field(
        None,
        ge=8,
        description="Longest proposed system prompt (tokens, estimated); longer ones are re-asked, then rejected",
    )
    no_regress: str | None = Field(
        None, description="An aspect (e.g. Safety) a new prompt may not score lower on than its parent"
    )
    held_out: int = Field(
        0,
        ge=0,
        le=10000,
        description="Seed queries set aside before the search (seeded, per category) and never shown to it; "
        "written to the run's held_out.jsonl for drpo eval",
    )
    validation: int = Field(
        0,
        ge=0,
        le=1000,
        description="Validation queries (a departure from the paper, 0 = off): drawn once (seeded, per category) "
        "from the searched seeds and never trained on; each depth's survivors and the initial prompt are judged "
        "on them, and the beam and the returned prompt rank on that validation reward",
    )
    validation_margin: float = Field(
        0.0,
        ge=0.0,
        le=4.0,
        description="How much more than the initial prompt's mean validation reward a proposal must score to "
        "replace it (0 = any higher score); guards against a lead that is noise on a few validation queries",
    )

    @model_validator(mode="after")
    def _margin_needs_validation(self) -> SearchSettings:
        if self.validation_margin > 0 and self.validation == 0:
            raise ValueError("search.validation_margin needs search.validation (validation queries to measure it on)")
        return self


class RewardSettings(BaseModel):
    """How answers are rewarded: aspects chosen per query (dynamic, DRPO) or always the same (static)."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["dynamic", "static"] = Field(
        "dynamic", description="dynamic: aspects selected per query; static: every fixed aspect, every time"
    )
    icl_mode: Literal["dynamic", "static"] | None = Field(
        None, description="The same for ICL optimization (default: mode)"
    )
    scoring: Literal["absolute", "expected", "relative"] = Field(
        "absolute",
        description="absolute: the 1-5 digit the judge writes (paper); expected: its probability-weighted mean "
        "over 1-5 from token log-probabilities (breaks ties; falls back to the digit where none are given); "
        "relative: each answer graded against the initial prompt's answer to the same query (3 = as good), "
        "probability-weighted where log-probabilities are given",
    )
    rubric: Literal["paper", "anchored"] = Field(
        "paper",
        description="Judge scale wording: the paper's agree/disagree scale, or anchors per score with 5 as rare",
    )
    new_aspects: bool = Field(
        True,
        description="Let the selector propose aspects beyond the list (paper); false keeps it to the list's "
        "names (a small selector names the query's topic instead of a quality)",
    )
    rationale: Literal["first", "none"] = Field(
        "first",
        description="first: the judge writes a rationale before each score, and the optimizer reads them (paper); "
        "none: the scores alone (far shorter judge replies; the optimizer then sees scores without reasons)",
    )

    def for_icl(self) -> str:
        return self.icl_mode or self.mode


class IclSearchSettings(BaseModel):
    """ICL-answer optimization (Algorithm 1); defaults follow the paper's Table 7."""

    model_config = ConfigDict(extra="forbid")

    beam_width: int = Field(1, ge=1, le=16, description="W: answers kept per example")
    num_actions: int = Field(1, ge=1, le=16, description="M: rewrites per kept answer and round")
    depth: int = Field(5, ge=1, le=50, description="D: rewrite rounds per example")


class PriceSpec(BaseModel):
    """Dollars per million tokens for one model."""

    model_config = ConfigDict(extra="forbid")

    input_per_million: float = Field(..., ge=0, description="Dollars per million input tokens")
    output_per_million: float = Field(..., ge=0, description="Dollars per million output tokens")


class BudgetSettings(BaseModel):
    """Limits that stop a run cleanly (status budget-exhausted); resume later with a larger budget."""

    model_config = ConfigDict(extra="forbid")

    max_tokens: int | None = Field(None, gt=0, description="Input + output tokens over all roles")
    max_cost: float | None = Field(None, gt=0, description="Dollars over all roles (needs prices)")


class ResponseCacheSettings(BaseModel):
    """A response cache shared across runs, in the store directory."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="Answer repeated identical requests from the cache, for free")
    sampling_roles: bool = Field(
        False, description="Also cache roles sampling at temperature > 0 (keyed by sample index and seed)"
    )


class LocalServerSettings(BaseModel):
    """The embedded llama.cpp server shared by every local role."""

    model_config = ConfigDict(extra="forbid")

    n_ctx: int = Field(16384, ge=512, description="Total context across parallel slots")
    parallel: int = Field(
        1,
        ge=1,
        le=16,
        description="Requests served at once. 1 (the default) is reproducible: with more slots llama.cpp's "
        "batched decoding changes replies with what else is running, even at temperature 0; on 2 cores "
        "one slot was also as fast (tests/benchmarks/embedded_server.py)",
    )
    threads: int = Field(0, ge=0, description="CPU threads (0 = all cores)")
    batch: int = Field(0, ge=0, le=8192, description="Prompt tokens processed per step (0 = llama.cpp's 512)")
    reproducible: bool = Field(
        True,
        description="Process every request's prompt from scratch, so a reply does not depend on what the server "
        "answered before and a resumed run ends as the unbroken one did. false: reuse the cached prefix of the "
        "previous prompt (less prompt processing when requests share a template; replies then depend on the "
        "order of requests, and resume can diverge). docs/performance.md has both measured",
    )


SYSTEM_KINDS = ("base", "fixed", "run")
RUN_VARIANTS = ("full", "prompt-only", "examples-only", "initial")


class EvalSystem(BaseModel):
    """One aligned system under evaluation: a base model plus an alignment (prompt and examples)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="Label in the tables")
    kind: Literal["base", "fixed", "run"] = Field(..., description="base prompt, fixed prompt+examples, or a run")
    run: str | None = Field(None, description="The finished run (id or directory) for kind run")
    variant: Literal["full", "prompt-only", "examples-only", "initial"] = Field(
        "full",
        description="A run's prompt and examples, its prompt alone, its examples with the basic prompt, or its "
        "examples with the prompt its search started from (initial: what the optimization changed, alone)",
    )
    k: int | None = Field(None, ge=0, le=16, description="Examples per query (default: the run's K, or 2 for fixed)")
    prompt_file: Path | None = Field(None, description="fixed: the system prompt file (default: ours)")
    examples_file: Path | None = Field(None, description="fixed: the examples file (default: our base ICL set)")
    base: RoleSpec | None = Field(None, description="A base model of its own (default: roles.base)")

    @model_validator(mode="after")
    def _run_named(self) -> EvalSystem:
        if self.kind == "run" and not self.run:
            raise ValueError(f"system {self.name}: kind run needs run: RUN_ID")
        if self.kind != "run" and (self.run or self.variant != "full"):
            raise ValueError(f"system {self.name}: run and variant are for kind run")
        if self.kind != "fixed" and (self.prompt_file or self.examples_file):
            raise ValueError(f"system {self.name}: prompt_file and examples_file are for kind fixed")
        return self


class EvaluationSettings(BaseModel):
    """The paper's evaluation protocol (just-eval-instruct): systems side by side, judged per aspect."""

    model_config = ConfigDict(extra="forbid")

    queries_file: Path | None = Field(None, description="Evaluation queries: just-eval JSONL, or one query a line")
    systems: list[EvalSystem] = Field(default_factory=list, description="Systems compared side by side")
    baseline: str | None = Field(None, description="System the others are compared with (default: the first)")
    pairwise: str | None = Field(None, description="Also judge each system against this one, in both orders")
    regular: int | None = Field(None, ge=0, description="Seeded sample of regular queries (default: all)")
    red_team: int | None = Field(None, ge=0, description="Seeded sample of red-team (safety) queries (default: all)")
    sample_seed: int = Field(0, description="Seed of the query sample and of the bootstrap")
    safety_ids: str | None = Field(None, description="Ids scored on safety, e.g. 800-999 (default: category)")
    exclude_seen: bool = Field(True, description="Leave out queries a run was optimized on (counted in the report)")
    bootstrap: int = Field(2000, ge=100, le=100000, description="Bootstrap resamples for confidence intervals")
    scoring: Literal["absolute", "expected"] = Field(
        "absolute",
        description="absolute: the 1-5 digit the judge writes (just-eval's protocol); expected: its probability-"
        "weighted mean over 1-5 in the same reply (agrees better with GPT-4-turbo, breaks ties; the written digits "
        "are kept beside it, and a reply without log-probabilities falls back to them)",
    )
    rationale: Literal["first", "none"] = Field(
        "first",
        description="first: the judge writes a rationale before each score (just-eval's protocol); none: the "
        "scores alone (far shorter replies; read them with scoring: expected)",
    )
    basic_prompt: str = Field("You are a helpful assistant.", min_length=1, description="The base system's prompt")

    @model_validator(mode="after")
    def _names(self) -> EvaluationSettings:
        names = [system.name for system in self.systems]
        if len(set(names)) != len(names):
            raise ValueError("evaluation systems need distinct names")
        for field in ("baseline", "pairwise"):
            value = getattr(self, field)
            if value is not None and names and value not in names:  # systems may still come from flags
                raise ValueError(f"{field} {value!r} is not among the systems ({', '.join(names)})")
        return self


class Settings(BaseModel):
    """Everything one optimization run needs."""

    model_config = ConfigDict(extra="forbid")

    run_id: str | None = Field(
        None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$", description="The run's name (default: a timestamp)"
    )
    runs_dir: Path = Field(DEFAULT_RUNS_DIR, description="Where run directories live")
    store_dir: Path | None = Field(None, description="Chroma store and aspect cache (default: RUNS_DIR/.store)")
    seed_file: Path | None = Field(None, description="Seed queries (Alpaca/LIMA JSON, text, JSONL); default: ours")
    seed_format: Literal["auto", "alpaca", "lima", "text", "jsonl"] = Field(
        "auto", description="How to read seed_file (auto: by its extension and content)"
    )
    icl_file: Path | None = Field(None, description="Base ICL examples (JSON); default: ours")
    icl_collection: str | None = Field(
        None, description="Retrieve ICL examples from this optimized collection (an ICL run id or collection name)"
    )
    embedding_model: str = Field(
        "packaged:all-minilm-l6-v2",
        description="packaged:all-minilm-l6-v2, a local sentence-transformers folder, or a hub model name",
    )
    checkpointer: str = Field(
        "sqlite",
        description="sqlite (a file in the run directory), memory, or a postgresql:// DSN without a password",
    )
    chroma_url: str | None = Field(
        None, description="A Chroma server (http://host:port) instead of the embedded store under store_dir"
    )
    local: LocalServerSettings = Field(default_factory=LocalServerSettings)
    roles: RolesSettings = Field(default_factory=RolesSettings)
    search: SearchSettings = Field(default_factory=SearchSettings)
    reward: RewardSettings = Field(default_factory=RewardSettings)
    icl_search: IclSearchSettings = Field(default_factory=IclSearchSettings)
    budget: BudgetSettings = Field(default_factory=BudgetSettings)
    cache: ResponseCacheSettings = Field(default_factory=ResponseCacheSettings)
    prices: dict[str, PriceSpec] = Field(
        default_factory=dict, description="Price per model name (the roles' model field); local models are free"
    )
    evaluation: EvaluationSettings | None = Field(None, description="What an evaluation run compares (drpo eval)")

    @model_validator(mode="after")
    def _check_stores(self) -> Settings:
        check_checkpointer(self.checkpointer)
        if self.chroma_url is not None:
            parse_chroma_url(self.chroma_url)
        return self

    def uses_postgres(self) -> bool:
        return is_postgres_dsn(self.checkpointer)

    @model_validator(mode="after")
    def _prices_for_cost_budget(self) -> Settings:
        if self.budget.max_cost is not None:
            for role in ROLE_NAMES:
                spec = self.roles.get(role)
                if spec.provider != "local" and spec.model not in self.prices:
                    raise ValueError(f"budget.max_cost needs prices.{spec.model} (used by role {role})")
        return self

    def caches_role(self, spec: RoleSpec) -> bool:
        return self.cache.enabled and (spec.temperature == 0 or self.cache.sampling_roles)

    def resolved_store_dir(self) -> Path:
        return self.store_dir if self.store_dir is not None else default_store_dir(self.runs_dir)

    def with_absolute_input_paths(self) -> Settings:
        """The same settings with every input file named by its absolute path, so a run saved with them
        resumes from any working directory (a relative seed file would be looked for in the wrong one)."""

        def absolute(path: Path | None) -> Path | None:
            return path.expanduser().absolute() if path is not None else None

        update: dict[str, Any] = {"seed_file": absolute(self.seed_file), "icl_file": absolute(self.icl_file)}
        if self.evaluation is not None:
            systems = [
                system.model_copy(
                    update={
                        "prompt_file": absolute(system.prompt_file),
                        "examples_file": absolute(system.examples_file),
                    }
                )
                for system in self.evaluation.systems
            ]
            update["evaluation"] = self.evaluation.model_copy(
                update={"queries_file": absolute(self.evaluation.queries_file), "systems": systems}
            )
        return self.model_copy(update=update)

    def snapshot(self) -> dict[str, Any]:
        """JSON-safe dump for the run directory. Holds env-var names only, never secret values."""
        return self.model_dump(mode="json")


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "settings"
    return f"{where}: {first['msg']}"


def nested_model(annotation: Any) -> tuple[type[BaseModel] | None, str]:
    """The settings model a field holds (directly, optional, in a list or as dict values) and the path
    suffix that says how it is keyed."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, ""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            if arg is not type(None):
                found, suffix = nested_model(arg)
                if found is not None:
                    return found, suffix
    if origin is list and args:
        found, _ = nested_model(args[0])
        return found, "[]"
    if origin is dict and len(args) == 2:
        found, _ = nested_model(args[1])
        return found, ".MODEL"
    return None, ""


def _refuse_booleans_for_numbers(model: type[BaseModel], data: Any, where: str = "") -> None:
    """``beam_width: true`` would validate as 1 (YAML's true is Python's 1): a number field takes numbers only."""
    if not isinstance(data, dict):
        return
    for name, value in data.items():
        field = model.model_fields.get(name) if isinstance(name, str) else None
        if field is None:
            continue
        inner, keyed = nested_model(field.annotation)
        if inner is not None:
            if keyed == "[]" and isinstance(value, list):  # a list of models (evaluation.systems)
                items = [(f"[{index}]", item) for index, item in enumerate(value)]
            elif keyed == ".MODEL" and isinstance(value, dict):  # keyed models (prices)
                items = [(f".{key}", item) for key, item in value.items()]
            else:
                items = [("", value)]
            for suffix, item in items:
                _refuse_booleans_for_numbers(inner, item, f"{where}{name}{suffix}.")
            continue
        types_named = [arg for arg in (field.annotation, *typing.get_args(field.annotation)) if isinstance(arg, type)]
        if isinstance(value, bool) and bool not in types_named and any(arg in (int, float) for arg in types_named):
            raise DrpoInputError(f"invalid settings: {where}{name}: {value} is not a number")


def settings_from_dict(data: dict[str, Any], overrides: dict[str, Any] | None = None) -> Settings:
    """Validate a settings mapping plus overrides, turning validation errors into one clear line."""
    merged = deep_merge(data, overrides or {})
    _refuse_booleans_for_numbers(Settings, merged)
    try:
        return Settings.model_validate(merged)
    except ValidationError as error:
        raise DrpoInputError(f"invalid settings: {_first_error(error)}") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML would keep the later silently,
    so ``search: {depth: 1, depth: 5}`` would run with a depth nobody chose). Keys brought in by a ``<<``
    merge may be overridden, as YAML intends."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_settings_file(path: Path) -> dict[str, Any]:
    """Read a YAML (or JSON) settings file into a mapping."""
    if not path.is_file():
        raise DrpoInputError(f"config file not found: {path}")
    try:
        data = yaml.load(read_user_text(path, "config file"), Loader=_UniqueKeyLoader)  # a SafeLoader
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(error, "problem", None) or ""
        detail = f": {problem}" if problem.startswith("duplicate key") else ""
        raise DrpoInputError(f"config file {path} is not valid YAML{where}{detail}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DrpoInputError(f"config file {path} must hold a mapping of settings")
    return data


def load_settings(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Settings from an optional YAML file with CLI-style overrides applied on top."""
    data = read_settings_file(Path(path)) if path is not None else {}
    return settings_from_dict(data, overrides)


def apply_local_model(data: dict[str, Any], local_model: str) -> dict[str, Any]:
    """Point every local role at one packaged model name or GGUF path (the --local-model flag)."""
    roles = data.setdefault("roles", {})
    for role in ROLE_NAMES:
        spec = roles.setdefault(role, {})
        if spec.get("provider", "local") == "local":
            spec["model"] = local_model
    return data


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        cleaned = {key: _without_none(item) for key, item in value.items() if item is not None}
        return {key: item for key, item in cleaned.items() if item != {}}
    return value


def settings_from_flags(config: Path | None, flags: dict[str, Any], local_model: str | None = None) -> Settings:
    """Settings from an optional YAML file with command-line flags on top (flags left unset are ignored)."""
    data = read_settings_file(config) if config is not None else {}
    data = deep_merge(data, _without_none(flags))
    if local_model:
        data = apply_local_model(data, local_model)
    return settings_from_dict(data)
