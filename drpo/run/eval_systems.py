"""Systems under evaluation: a base model plus an alignment, resolved to exactly what serving runs.

Every system becomes an :class:`AlignedChatModel` (the serving path): ``base`` is the basic prompt with
no examples, ``fixed`` a fixed prompt with its first K examples (URIAL-style), ``run:ID`` a finished
run's prompt with retrieval from its collection, and the run's ablations ``prompt-only`` (no examples)
and ``examples-only`` (the basic prompt with the run's examples).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseLanguageModel

from drpo.errors import DrpoInputError
from drpo.eval.queries import EvalQuery, load_eval_queries, normalized, sample_queries
from drpo.graph.context import EvalResources
from drpo.serve.aligned import AlignedChatModel
from drpo.serve.runs import open_run_for_serving
from drpo.settings import EvalSystem, EvaluationSettings, Settings
from drpo.store.embeddings import Embedder
from drpo.store.files import read_user_text
from drpo.store.icl_store import IclExample
from drpo.store.run_dir import find_run
from drpo.store.seeds import default_icl_examples, load_icl_file

SPEC = re.compile(r"^(?:(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)=)?(?P<spec>[^,]+)(?:,k=(?P<k>\d+))?$")


def parse_system_flag(text: str) -> dict[str, Any]:
    """``[NAME=]base|fixed|run:ID[:prompt-only|:examples-only|:initial][,k=N]`` -> an EvalSystem mapping."""
    match = SPEC.match(text.strip())
    if match is None:
        raise DrpoInputError(
            f"unknown system spec {text!r}: "
            "use [NAME=]base|fixed|run:RUN_ID[:prompt-only|:examples-only|:initial][,k=N]"
        )
    spec, name, k = match.group("spec"), match.group("name"), match.group("k")
    system: dict[str, Any] = {}
    if spec in ("base", "fixed"):
        system.update(kind=spec)
    elif spec.startswith("run:"):
        run, _, variant = spec[4:].partition(":")
        if not run:
            raise DrpoInputError(f"system spec {text!r} names no run")
        if variant not in ("", "full", "prompt-only", "examples-only", "initial"):
            raise DrpoInputError(
                f"unknown run variant {variant!r} in {text!r}: use prompt-only, examples-only or initial"
            )
        system.update(kind="run", run=run, variant=variant or "full")
    else:
        raise DrpoInputError(f"unknown system spec {text!r}: use base, fixed or run:RUN_ID")
    default_name = spec.replace("run:", "").replace(":", "-")
    system["name"] = name or (default_name + (f"-k{k}" if k else ""))
    if k is not None:
        system["k"] = int(k)
    return system


class FixedExamples:
    """A retriever that always returns the same first K examples (the URIAL-style fixed baseline)."""

    def __init__(self, examples: list[IclExample]) -> None:
        self._examples = {example.id: example for example in examples}
        self._order = [example.id for example in examples]

    def nearest_ids(self, query: str, k: int, embedding: Any = None) -> list[str]:
        return self._order[:k]

    def get(self, ids: list[str]) -> list[IclExample]:
        return [self._examples[example_id] for example_id in ids]


@dataclass
class ResolvedSystem:
    """A system ready to answer: its prompt, its examples, and which base model serves it."""

    spec: EvalSystem
    system_prompt: str
    k: int
    retriever: Any
    base_mode: str
    label: str
    seen_queries: set[str] = field(default_factory=set)  # normalized texts the run was optimized on
    seen_known: bool = True
    reward_model: str | None = None  # the run's own judge (model identity), to warn of self-grading

    @property
    def name(self) -> str:
        return self.spec.name

    def aligned(self, llm: BaseLanguageModel) -> AlignedChatModel:
        """The serving path: the exact model object ``AlignedChatModel.from_run`` would build."""
        return AlignedChatModel(
            llm=llm,
            system_prompt=self.system_prompt,
            retriever=self.retriever,
            k=self.k,
            run_id=self.spec.run or self.name,
            base_mode=self.base_mode,  # type: ignore[arg-type]
        )


def _run_label(result: dict[str, Any], variant: str, k: int) -> str:
    search = result.get("search") or {}
    parts = [f"run {result.get('run_id', '?')}"]
    if variant != "full":
        parts.append(variant)
    if search:
        parts.append(f"{search.get('strategy', 'beam')} search")
        parts.append(f"{(result.get('reward') or {}).get('mode', 'dynamic')} reward")
    parts.append(f"K={k}")
    return ", ".join(parts)


def initial_prompt_of(result: dict[str, Any]) -> str:
    """The prompt a run's search started from (its depth-1 root)."""
    for depth in result.get("depths", []):
        for candidate in depth.get("candidates", []):
            if candidate.get("parent") is None:
                return str(candidate["prompt"])
    raise DrpoInputError(f"run {result.get('run_id')} records no initial prompt")


def _seen(result: dict[str, Any]) -> tuple[set[str], bool]:
    """Normalized texts of every query the run's optimization scored or selected on; unknown for imported runs."""
    if result.get("imported_from"):
        return set(), False
    texts = {normalized(query["text"]) for depth in result.get("depths", []) for query in depth.get("queries", [])}
    texts |= {normalized(query["text"]) for query in (result.get("validation") or {}).get("queries", [])}
    return texts, True  # validation queries chose the prompt: seen too


def resolve_system(
    system: EvalSystem, settings: Settings, evaluation: EvaluationSettings, embedder: Embedder
) -> ResolvedSystem:
    base_mode = (system.base or settings.roles.base).mode
    if system.kind == "base":
        return ResolvedSystem(system, evaluation.basic_prompt, 0, None, base_mode, "basic prompt, no examples")
    if system.kind == "fixed":
        prompt = settings.search.initial_prompt
        if system.prompt_file is not None:
            prompt = _read_prompt(system.prompt_file)
        examples = load_icl_file(system.examples_file) if system.examples_file else default_icl_examples()
        k = settings.search.icl_k if system.k is None else system.k
        label = f"fixed prompt, first {k} of {len(examples)} examples"
        return ResolvedSystem(system, prompt, k, FixedExamples(examples), base_mode, label)
    run_dir = find_run(str(system.run), settings.runs_dir)
    result = run_dir.read_result()
    if result is None:
        raise DrpoInputError(f"system {system.name}: run {run_dir.run_id} has not finished; finish it first")
    if result.get("kind") in ("icl", "eval"):
        raise DrpoInputError(f"system {system.name}: run {run_dir.run_id} is not a prompt-optimization run")
    served = open_run_for_serving(run_dir.root, settings.runs_dir, embedder=embedder)
    k = served.k if system.k is None else system.k
    if system.variant == "prompt-only":
        k = 0
    prompt = evaluation.basic_prompt if system.variant == "examples-only" else served.system_prompt
    if system.variant == "initial":
        prompt = initial_prompt_of(dict(result))
    seen, known = _seen(dict(result))
    run_settings = run_dir.read_config().get("roles", {}).get("evaluator", {})
    reward_model = f"{run_settings.get('provider', 'local')}:{run_settings.get('model', '')}" if run_settings else None
    return ResolvedSystem(
        system,
        prompt,
        k,
        served.store,
        system.base.mode if system.base else served.base_mode,
        _run_label(dict(result), system.variant, k),
        seen,
        known,
        None if result.get("imported_from") else reward_model,
    )


def self_graded(settings: Settings, systems: list[ResolvedSystem]) -> list[str]:
    """Systems whose run was optimized with the same judge model that now evaluates them."""
    from drpo.llm.providers import model_identity

    judge = model_identity(settings.roles.evaluator)
    return [system.name for system in systems if system.reward_model == judge]


def _read_prompt(path: Path) -> str:
    text = read_user_text(path, "prompt file").strip()
    if not text:
        raise DrpoInputError(f"prompt file {path} is empty")
    return text


def selected_queries(evaluation: EvaluationSettings) -> list[EvalQuery]:
    """The evaluation's query sample (seeded), from its query file."""
    if evaluation.queries_file is None:
        raise DrpoInputError("an evaluation needs a query file: --queries FILE (just-eval JSONL or one query a line)")
    queries = load_eval_queries(evaluation.queries_file, evaluation.safety_ids)
    return sample_queries(queries, evaluation.regular, evaluation.red_team, evaluation.sample_seed)


def _evaluation(settings: Settings) -> EvaluationSettings:
    evaluation = settings.evaluation
    if evaluation is None or not evaluation.systems:
        raise DrpoInputError("an evaluation needs at least one system: --system base|fixed|run:RUN_ID[...]")
    return evaluation


def preflight_eval(settings: Settings, models: dict[str, Any] | None, embedder: Embedder | None) -> None:
    """Every bad input (query file, system specs, unfinished runs, missing local models) fails before the
    evaluation's run directory exists."""
    from drpo.llm.local_models import resolve_local_model

    evaluation = _evaluation(settings)
    selected_queries(evaluation)
    shared = embedder or Embedder(settings.embedding_model)
    for system in evaluation.systems:
        resolve_system(system, settings, evaluation, shared)
        if (
            system.base is not None
            and system.base.provider == "local"
            and f"system:{system.name}" not in (models or {})
        ):
            resolve_local_model(system.base.model)


def build_eval_resources(settings: Settings, services: Any, models: dict[str, Any]) -> EvalResources:
    """Systems resolved to their serving models, each with the caller of its base model, and the judge."""
    from drpo.llm.local_server import LocalServerPool
    from drpo.llm.providers import build_role_model, model_identity

    evaluation = _evaluation(settings)
    queries = selected_queries(evaluation)
    base_caller = services.callers["base"]
    systems: dict[str, ResolvedSystem] = {}
    answerers = {}
    for system in evaluation.systems:
        systems[system.name] = resolve_system(system, settings, evaluation, services.embedder)
        given = models.get(f"system:{system.name}")
        if given is not None:
            spec = system.base or settings.roles.base
            answerers[system.name] = base_caller.for_model(
                spec, given, f"custom:{type(given).__name__}:{system.name}", openai_style=False
            )
        elif system.base is not None:
            if system.base.provider == "local" and services.pool is None:
                services.pool = LocalServerPool(settings.local)
            model = build_role_model("base", system.base, services.pool)
            answerers[system.name] = base_caller.for_model(
                system.base, model, model_identity(system.base), openai_style=True
            )
        else:
            answerers[system.name] = base_caller
    return EvalResources(
        settings=evaluation,
        queries={query.id: query for query in queries},
        order=[query.id for query in queries],
        systems=systems,  # type: ignore[arg-type]
        answerers=answerers,
        judge=services.callers["evaluator"],
    )
