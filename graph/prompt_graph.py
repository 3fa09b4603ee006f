"""The prompt-optimization graph (Algorithm 2): one loop iteration per depth.

sample_queries -> Send(generate) per (candidate, query) -> dispatch_evaluation -> Send(evaluate) per
answer -> prune_beam -> [review: an interrupt, when review is on] -> Send(transition) per beam node,
beside select_aspects and retrieve_icl for the next depth's queries -> sample_queries ... -> finalize.

At depth 1 (and whenever a depth's queries lack aspects or examples, e.g. after a resume) sample_queries
sends select_aspects and retrieve_icl first, which lead to dispatch_generation and on to generation.
Preparing the next depth beside the transitions keeps aspect selection and retrieval off the path
between model calls: a depth is three rounds of requests (generate, evaluate, transition).

With ``search.validation`` on, prune_beam leads to validate -> Send(validation_generate) -> dispatch_validation_
evaluation -> Send(validation_evaluate) -> select_on_validation, which reorders the beam on the validation
reward before the review and the transitions (nodes/validate.py says why).

Under ``reward.scoring: relative`` the initial prompt also answers every depth's queries, and every other
candidate's answer is graded against its answer to the same query (the initial prompt's own answers are
graded absolutely, so the first depth's feedback and skip rule mean what they do in the paper).
"""

from __future__ import annotations

from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Send

from drpo.graph.context import DrpoContext
from drpo.graph.state import (
    ROOT_ID,
    EvaluatePayload,
    GeneratePayload,
    PreparePayload,
    PromptOptInput,
    PromptOptState,
    TransitionPayload,
)
from drpo.nodes.evaluate import evaluate
from drpo.nodes.finalize import finalize
from drpo.nodes.generate import generate
from drpo.nodes.prune_beam import prune_beam
from drpo.nodes.retrieve_icl import retrieve_icl
from drpo.nodes.review import review
from drpo.nodes.sample_queries import sample_queries
from drpo.nodes.select_aspects import select_aspects
from drpo.nodes.stalls import evaluation_round, transition_round
from drpo.nodes.transition import transition
from drpo.nodes.validate import needs_validation, select_on_validation, validate, validating, validation_pool
from drpo.scoring import path_ids, verdict_key
from drpo.strategy import strategy_for


def missing_preparation(state: PromptOptState, depth: int, queries: list[str], then: str) -> list[Send]:
    """select_aspects / retrieve_icl branches for the queries (of ``depth``) still lacking aspects / examples."""
    sends = []
    for node, key in (("select_aspects", "aspects"), ("retrieve_icl", "icl")):
        missing = [query_id for query_id in queries if query_id not in state.get(key, {})]
        if missing:
            sends.append(Send(node, PreparePayload(depth=depth, queries=missing, then=then)))  # type: ignore[typeddict-item]
    return sends


def fan_out_generation(state: PromptOptState) -> list[Send] | str:
    """One generate branch per (candidate, query) once the depth's queries have their aspects and
    examples (prepared beside the previous depth's transitions, or first, at depth 1 and after a resume)."""
    depth = state["depth"]
    queries = state["queries"][str(depth)]
    if depth == 1:  # the validation queries are prepared beside the first depth's
        queries = [*queries, *state.get("validation_queries", [])]
    preparing = missing_preparation(state, depth, queries, "dispatch_generation")
    if preparing:
        return preparing
    sends: list[Send] = []
    for candidate_id in answering(state):
        for query_id in state["queries"][str(depth)]:
            if verdict_key(candidate_id, query_id) in state.get("evaluations", {}):
                continue
            if candidate_id not in state["frontier"] and query_id in state.get("references", {}):
                continue  # a reference answer already written
            sends.append(Send("generate", generate_payload(state, depth, candidate_id, query_id)))
    return sends or "dispatch_evaluation"


def generate_payload(state: PromptOptState, depth: int, candidate_id: str, query_id: str) -> GeneratePayload:
    """One answer to write: the candidate's prompt on the query, with the query's retrieved examples."""
    prompt = state["candidates"][candidate_id]["prompt"]
    return GeneratePayload(
        depth=depth, candidate=candidate_id, prompt=prompt, query=query_id, icl=state["icl"][query_id]
    )


def evaluate_payload(state: PromptOptState, depth: int, candidate_id: str, query_id: str) -> EvaluatePayload:
    """One answer to judge on its query's aspects; under relative scoring against the initial prompt's answer,
    and as a new sample when an earlier verdict on it stayed unusable."""
    answer_id = verdict_key(candidate_id, query_id)
    payload = EvaluatePayload(
        **generate_payload(state, depth, candidate_id, query_id),
        aspects=state["aspects"][query_id],
        answer_id=answer_id,
    )
    if relative(state) and candidate_id != ROOT_ID:
        payload["reference_answer_id"] = verdict_key(ROOT_ID, query_id)
    if answer_id in state.get("evaluations", {}):  # its verdict stayed unusable: asked again as a new sample
        payload["round"] = evaluation_round(state, answer_id)
    return payload


def relative(state: PromptOptState) -> bool:
    return state.get("scoring") == "relative"


def answering(state: PromptOptState) -> list[str]:
    """The candidates that answer the depth's queries: the frontier, and under relative scoring the initial
    prompt too (its answers are what every other answer is graded against)."""
    frontier = list(state["frontier"])
    return frontier if not relative(state) or ROOT_ID in frontier else [*frontier, ROOT_ID]


def dispatch_generation(state: PromptOptState) -> dict[str, Any]:
    """Join point: runs once after the depth's aspects and examples are prepared."""
    return {}


def fan_out_evaluation(state: PromptOptState) -> list[Send]:
    """After generation and aspect selection: one evaluate branch per answer, in a fixed order."""
    depth = state["depth"]
    sends = []
    for candidate_id in state["frontier"]:
        for query_id in state["queries"][str(depth)]:
            done = state.get("evaluations", {}).get(verdict_key(candidate_id, query_id))
            if done is not None and done["reward"] is not None:
                continue
            sends.append(Send("evaluate", evaluate_payload(state, depth, candidate_id, query_id)))
    return sends or [Send("prune_beam", state)]


def dispatch_evaluation(state: PromptOptState) -> dict[str, Any]:
    """Join point: runs once after every generate branch has finished."""
    return {}


def route_after_prune(state: PromptOptState) -> list[Send] | str:
    """To validation first when ``search.validation`` is on, else as after selection."""
    if validating(state):
        return "validate"
    return route_after_selection(state)


def fan_out_validation(state: PromptOptState) -> list[Send] | str:
    """Validation answers for the pool (the depth's survivors and the previous beam) on every validation
    query still lacking a usable verdict, once those queries have their aspects and examples."""
    depth = state["depth"]
    queries = state["validation_queries"]
    preparing = missing_preparation(state, depth, queries, "validate")
    if preparing:
        return preparing
    sends = [
        Send("validation_generate", generate_payload(state, depth, candidate_id, query_id))
        for candidate_id in validation_pool(state)
        for query_id in needs_validation(state, candidate_id)
    ]
    return sends or "dispatch_validation_evaluation"


def fan_out_validation_evaluation(state: PromptOptState) -> list[Send]:
    """One evaluate branch per validation answer without a usable verdict (asked afresh after a stall)."""
    sends = [
        Send("validation_evaluate", evaluate_payload(state, state["depth"], candidate_id, query_id))
        for candidate_id in validation_pool(state)
        for query_id in needs_validation(state, candidate_id)
    ]
    return sends or [Send("select_on_validation", state)]


def dispatch_validation_evaluation(state: PromptOptState) -> dict[str, Any]:
    """Join point: runs once after every validation answer is written."""
    return {}


def route_after_selection(state: PromptOptState) -> list[Send] | str:
    """Through the review node only when review is on (no extra step, and no extra checkpoint, otherwise)."""
    if state.get("review_enabled") and not state.get("stop_reason"):
        return "review"
    return route_after_review(state)


def route_after_review(state: PromptOptState) -> list[Send] | str:
    """Finalize when the search is over, else one transition branch per node the strategy expands
    (straight to the next depth when a reviewer replaced the whole beam with their own prompts)."""
    if state.get("stop_reason"):
        return "finalize"
    depth = state["depth"]
    shape = state["strategy"]
    strategy = strategy_for(shape["name"])
    sends = []
    for expansion in strategy.expansions(state["beam"], depth, shape["beam_width"], shape["num_actions"]):
        candidate_id = expansion.candidate_id
        record = state["candidates"][candidate_id]
        history = [state["candidates"][node]["prompt"] for node in path_ids(candidate_id, state["candidates"])]
        evaluations = [
            state["evaluations"][key]
            for query_id in state["queries"][str(record["depth"])]
            if (key := verdict_key(candidate_id, query_id)) in state["evaluations"]
        ]
        payload = TransitionPayload(
            depth=depth,
            rank=expansion.rank,
            candidate=record,
            history=history,
            evaluations=evaluations,
            aspects={query_id: state["aspects"][query_id] for query_id in state["queries"][str(depth)]},
        )
        if expansion.sample_offset:
            payload["sample_offset"] = expansion.sample_offset
        if retry := transition_round(state, candidate_id, depth, shape["num_actions"] or 1):
            payload["retry_round"] = retry
        sends.append(Send("transition", payload))
    if not sends:
        return "sample_queries"
    return sends + prepared_ahead(state, depth + 1)


def prepared_ahead(state: PromptOptState, depth: int) -> list[Send]:
    """The next depth's queries are known (a seeded order): their aspects and examples are prepared
    beside this depth's transitions, so the next depth starts generating at once."""
    width = len(state["queries"][str(state["depth"])])
    upcoming = state["query_order"][(depth - 1) * width : depth * width]
    return missing_preparation(state, depth, upcoming, "sample_queries")


def build_prompt_graph() -> StateGraph:
    """The uncompiled graph; nodes reach models and stores through the DrpoContext run context."""
    builder = StateGraph(PromptOptState, context_schema=DrpoContext, input_schema=PromptOptInput)
    builder.add_node("sample_queries", sample_queries)
    prepared_for = ("dispatch_generation", "sample_queries", "validate")
    builder.add_node("select_aspects", select_aspects, destinations=prepared_for)
    builder.add_node("retrieve_icl", retrieve_icl, destinations=prepared_for)
    builder.add_node("dispatch_generation", dispatch_generation)
    builder.add_node("generate", generate)
    builder.add_node("dispatch_evaluation", dispatch_evaluation)
    builder.add_node("evaluate", evaluate)
    builder.add_node("prune_beam", prune_beam)
    builder.add_node("validate", validate)
    # The same answer and verdict steps as training, as their own nodes so their edges lead to selection.
    builder.add_node("validation_generate", generate)
    builder.add_node("dispatch_validation_evaluation", dispatch_validation_evaluation)
    builder.add_node("validation_evaluate", evaluate)
    builder.add_node("select_on_validation", select_on_validation)
    builder.add_node("review", review)
    builder.add_node("transition", transition)
    builder.add_node("finalize", finalize)
    builder.add_edge(START, "sample_queries")
    generation = ["select_aspects", "retrieve_icl", "generate", "dispatch_evaluation"]
    builder.add_conditional_edges("sample_queries", fan_out_generation, generation)
    builder.add_conditional_edges("dispatch_generation", fan_out_generation, generation)
    builder.add_edge("generate", "dispatch_evaluation")
    builder.add_conditional_edges("dispatch_evaluation", fan_out_evaluation, ["evaluate", "prune_beam"])
    builder.add_edge("evaluate", "prune_beam")
    after_depth = ["review", "transition", "select_aspects", "retrieve_icl", "finalize", "sample_queries"]
    builder.add_conditional_edges("prune_beam", route_after_prune, [*after_depth, "validate"])
    validation = ["select_aspects", "retrieve_icl", "validation_generate", "dispatch_validation_evaluation"]
    builder.add_conditional_edges("validate", fan_out_validation, validation)
    builder.add_edge("validation_generate", "dispatch_validation_evaluation")
    builder.add_conditional_edges(
        "dispatch_validation_evaluation",
        fan_out_validation_evaluation,
        ["validation_evaluate", "select_on_validation"],
    )
    builder.add_edge("validation_evaluate", "select_on_validation")
    builder.add_conditional_edges("select_on_validation", route_after_selection, after_depth)
    builder.add_conditional_edges("review", route_after_review, after_depth[1:])
    builder.add_edge("transition", "sample_queries")
    builder.add_edge("finalize", END)
    return builder


def compile_prompt_graph(checkpointer: BaseCheckpointSaver | None = None, **kwargs: Any) -> CompiledStateGraph:
    return build_prompt_graph().compile(checkpointer=checkpointer, **kwargs)
