"""Dry run: the calls a prompt-optimization run will make per role, and its token and cost estimate.

Counts follow the search exactly when no level is skipped (the expected case); the upper bound
adds the I extra depths that skipped levels can earn. Token figures are estimates: prompts are
rendered from the real templates with the seed set's and ICL set's average lengths, and replies
are assumed to use three quarters of each role's max_tokens (judge and selector replies are
bounded by their JSON shape).
"""

from __future__ import annotations

from statistics import fmean
from typing import Any

from drpo.errors import DrpoInputError
from drpo.judge.aspects import FALLBACK_ASPECTS, selection_fingerprint
from drpo.llm.n_support import FEATURE
from drpo.llm.pricing import call_cost
from drpo.llm.providers import model_identity
from drpo.llm.usage import estimate_tokens
from drpo.prompts import (
    ASPECT_SELECTION,
    EVAL_JUDGE,
    EVALUATION,
    PROMPT_TRANSITION,
    aspect_definitions,
    render,
)
from drpo.prompts.texts import aspect_list_text, eval_skeleton, reply_rule
from drpo.run.services import load_icl, load_seeds
from drpo.settings import Settings
from drpo.store.aspect_cache import AspectCache
from drpo.store.seeds import query_order
from drpo.store.server_features import ServerFeatures
from drpo.strategy import strategy_for


def frontier_sizes(depths: int, width: int, actions: int) -> list[int]:
    """Candidates scored at each depth: the root, then M children per kept node."""
    sizes = [1]
    for _ in range(depths - 1):
        sizes.append(min(width, sizes[-1]) * actions)
    return sizes


def judge_reply_tokens(rationale: str) -> int:
    """A judge reply's tokens per aspect: a short rationale and a score, or the score's JSON alone."""
    return 70 if rationale == "first" else 12


def validated_candidates(sizes: list[int], width: int) -> int:
    """Candidates answered on the validation queries: the initial prompt, then each depth's survivors of
    pruning (the previous beam's verdicts are kept, so they are not asked again)."""
    return 1 + sum(min(width, size) for size in sizes[1:])


def optimizer_uses_n(settings: Settings) -> bool:
    """As the run would decide, without a request: the setting, else what an earlier probe of the
    server found (remembered in the store), else one request per sample."""
    spec = settings.roles.optimizer
    if spec.provider == "local":
        return False
    if not spec.probes_n():
        return spec.uses_n()
    path = settings.resolved_store_dir() / "server_features.sqlite"
    if not path.is_file():  # a dry run never creates files
        return False
    features = ServerFeatures(path)
    try:
        return bool(features.get(FEATURE, str(spec.base_url), spec.model))
    finally:
        features.close()


# What a dry run assumes where it cannot know (estimates, not limits):
REPLY_SHARE = 0.75  # of a role's max_tokens an answer or proposal uses
PROMPT_CHARS = 1200  # a proposed system prompt
SELECTION_REPLY_TOKENS = 250  # an aspect selection's JSON
PROPOSAL_REPLY_TOKENS = 600  # at most, per proposal: its JSON holds one prompt and an analysis
JUDGE_REASONING_CHARS = 300  # the selector's reasoning, shown to the judge
JUDGE_FEEDBACK_CHARS = 800  # the evaluation shown to the optimizer
JUDGED_ASPECTS = 4  # aspects a selection picks (2-5)
FORMER_PROMPTS_SHOWN = 3  # prompts of the path the optimizer sees, at most prompt_history
CHARS_PER_TOKEN = 4
SKELETON_CHARS = 400  # the judge's reply skeleton for the five regular aspects
ALIGNMENT_TOKENS = 600  # a system's prompt and examples, added to each evaluated query


def cached_selections(settings: Settings, texts: dict[str, str], planned_queries: list[str]) -> int:
    """Planned queries whose aspect selection the store already holds (a dry run never creates the store)."""
    cache_path = settings.resolved_store_dir() / "aspect_cache.sqlite"
    if not cache_path.is_file():
        return 0
    cache = AspectCache(cache_path)
    try:
        selector = model_identity(settings.roles.aspect_selector)
        fingerprint = selection_fingerprint(not settings.reward.new_aspects)
        return sum(1 for qid in planned_queries if cache.get(texts[qid], selector, fingerprint) is not None)
    finally:
        cache.close()


def input_tokens(settings: Settings, query_chars: int, example_chars: int, base_reply: int) -> dict[str, int]:
    """One request's prompt tokens per role, rendered from the real templates with typical lengths."""
    search, relative = settings.search, settings.reward.scoring == "relative"
    query, answer = "x" * query_chars, "a" * (base_reply * CHARS_PER_TOKEN)
    aspects = list(FALLBACK_ASPECTS[:JUDGED_ASPECTS])
    definitions = {name: aspect_definitions()[name] for name in aspects}
    return {
        "aspect_selector": estimate_tokens(
            render(ASPECT_SELECTION, aspect_list=aspect_list_text(aspect_definitions()), query=query)
        ),
        "base": estimate_tokens("p" * PROMPT_CHARS + query) + search.icl_k * estimate_tokens("e" * example_chars),
        "evaluator": estimate_tokens(
            render(
                EVALUATION,
                query=query,
                output=answer * (2 if relative else 1),  # relative: the reference answer too
                aspect_list=aspect_list_text(definitions),
                aspect_reasoning="r" * JUDGE_REASONING_CHARS,
                eval_skeleton=eval_skeleton(aspects, rationale=settings.reward.rationale),
                reply_rule=reply_rule(settings.reward.rationale),
            )
        ),
        "optimizer": estimate_tokens(
            render(
                PROMPT_TRANSITION,
                current_prompt="p" * PROMPT_CHARS,
                feedback=query + answer + "e" * JUDGE_FEEDBACK_CHARS,
                former_prompts="p" * PROMPT_CHARS * min(search.prompt_history, FORMER_PROMPTS_SHOWN),
            )
        ),
    }


def output_tokens(settings: Settings, base_reply: int, samples_per_request: int) -> dict[str, int]:
    """One request's reply tokens per role."""
    proposal = min(int(settings.roles.optimizer.max_tokens * REPLY_SHARE), PROPOSAL_REPLY_TOKENS)
    return {
        "aspect_selector": SELECTION_REPLY_TOKENS,
        "base": base_reply,
        "evaluator": judge_reply_tokens(settings.reward.rationale) * JUDGED_ASPECTS,
        "optimizer": proposal * samples_per_request,
    }


def call_counts(
    settings: Settings, expected: list[int], bound: list[int], width: int, per_node: int, cached: int
) -> dict[str, tuple[int, int]]:
    """Calls per role: (expected, upper bound), for frontiers of ``expected`` and ``bound`` sizes per depth."""
    search = settings.search
    b = search.queries_per_depth
    relative = settings.reward.scoring == "relative"
    references = (b * (len(expected) - 1), b * (len(bound) - 1)) if relative else (0, 0)  # initial prompt's answers
    validated = tuple(search.validation * validated_candidates(sizes, width) for sizes in (expected, bound))

    def optimizer_requests(sizes: list[int]) -> int:
        return sum(min(width, size) for size in sizes[:-1]) * per_node

    selections = (len(expected) * b - cached + search.validation, len(bound) * b + search.validation)
    return {
        "aspect_selector": (0, 0) if settings.reward.mode == "static" else selections,
        "base": (sum(expected) * b + references[0] + validated[0], sum(bound) * b + references[1] + validated[1]),
        "evaluator": (sum(expected) * b + validated[0], sum(bound) * b + validated[1]),
        "optimizer": (optimizer_requests(expected), optimizer_requests(bound)),
    }


def plan_run(settings: Settings) -> dict[str, Any]:
    """The dry-run plan: calls per role (expected and upper bound), tokens and cost."""
    search = settings.search
    seeds, examples = load_seeds(settings), load_icl(settings)
    width = strategy_for(search.strategy).width(search.beam_width)
    expected = frontier_sizes(search.depth, width, search.num_actions)
    bound = frontier_sizes(search.depth + search.max_depth_increase, width, search.num_actions)
    per_node = 1 if optimizer_uses_n(settings) else search.num_actions
    samples_per_request = search.num_actions if per_node == 1 else 1
    planned_queries = query_order(seeds, search.seed)[: len(expected) * search.queries_per_depth]
    cached = cached_selections(settings, {seed.id: seed.text for seed in seeds}, planned_queries)
    base_reply = int(settings.roles.base.max_tokens * REPLY_SHARE)
    inputs = input_tokens(
        settings,
        int(fmean(len(seed.text) for seed in seeds)),
        int(fmean(len(example.query) + len(example.answer) for example in examples)),
        base_reply,
    )
    outputs = output_tokens(settings, base_reply, samples_per_request)
    roles: dict[str, Any] = {}
    for role, (count, upper) in call_counts(settings, expected, bound, width, per_node, cached).items():
        usage = {"input_tokens": inputs[role] * count, "output_tokens": outputs[role] * count}
        roles[role] = {
            "calls": count,
            "calls_upper_bound": upper,
            "input_tokens": usage["input_tokens"],
            "output_tokens": usage["output_tokens"],
            "cost": call_cost(role, usage, settings),
        }
    costs = [entry["cost"] for entry in roles.values()]
    return {
        "depths": (search.depth, search.depth + search.max_depth_increase),
        "cached_aspect_selections": cached,
        "samples_per_optimizer_request": samples_per_request,
        "strategy": search.strategy,
        "sampled_prompts": (sum(expected[1:]), sum(bound[1:])),
        "roles": roles,
        "tokens": sum(entry["input_tokens"] + entry["output_tokens"] for entry in roles.values()),
        "cost": None if any(cost is None for cost in costs) else round(sum(costs), 4),  # type: ignore[arg-type]
    }


def plan_eval(settings: Settings) -> dict[str, Any]:
    """An evaluation's planned calls per role (answers, grades, pairwise in both orders) and their cost."""
    from drpo.judge.grading import REGULAR_ASPECTS
    from drpo.run.eval_systems import selected_queries

    evaluation = settings.evaluation
    if evaluation is None or not evaluation.systems:
        raise DrpoInputError("an evaluation needs at least one system: --system base|fixed|run:RUN_ID[...]")
    queries = selected_queries(evaluation)
    systems = len(evaluation.systems)
    answers = len(queries) * systems
    pairs = 2 * len(queries) * (systems - 1) if evaluation.pairwise else 0
    query = "x" * int(fmean(len(q.text) for q in queries))
    answer_tokens = int(settings.roles.base.max_tokens * REPLY_SHARE)
    grade_input = estimate_tokens(
        render(
            EVAL_JUDGE,
            query=query,
            output="a" * answer_tokens * CHARS_PER_TOKEN,
            aspect_list=aspect_list_text(REGULAR_ASPECTS),
            eval_skeleton="s" * SKELETON_CHARS,
            reply_rule=reply_rule(evaluation.rationale),
        )
    )
    calls = {
        "base": (answers, estimate_tokens(query) + ALIGNMENT_TOKENS, answer_tokens),
        "evaluator": (answers + pairs, grade_input, judge_reply_tokens(evaluation.rationale) * len(REGULAR_ASPECTS)),
    }
    roles: dict[str, Any] = {}
    for role, (count, per_input, per_output) in calls.items():
        usage = {"input_tokens": per_input * count, "output_tokens": per_output * count}
        roles[role] = {**usage, "calls": count, "cost": call_cost(role, usage, settings)}
    costs = [entry["cost"] for entry in roles.values()]
    return {
        "queries": len(queries),
        "systems": systems,
        "roles": roles,
        "tokens": sum(entry["input_tokens"] + entry["output_tokens"] for entry in roles.values()),
        "cost": None if any(cost is None for cost in costs) else round(sum(costs), 4),  # type: ignore[arg-type]
    }
