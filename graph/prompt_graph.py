"""The prompt-optimization graph (Algorithm 2): one loop iteration per depth.

sample_queries -> retrieve_icl -> [select_aspects + Send(generate) per (candidate, query)]
-> dispatch_evaluation -> Send(evaluate) per answer -> prune_beam -> [review: an interrupt, when
review is on] -> Send(transition) per beam node
-> sample_queries ... -> finalize
"""

from __future__ import annotations

from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Send

from drpo.graph.context import DrpoContext
from drpo.graph.state import (
    EvaluatePayload,
    GeneratePayload,
    PromptOptInput,
    PromptOptState,
    StrategyRecord,
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
from drpo.scoring import eval_key, path_ids
from drpo.strategy import strategy_for


def fan_out_generation(state: PromptOptState) -> list[Send | str]:
    """Aspect selection and one generate branch per (candidate, query), all in the same step:
    answers do not depend on the aspects, so selecting them overlaps generation."""
    depth = state["depth"]
    sends: list[Send | str] = ["select_aspects"]
    for candidate_id in state["frontier"]:
        prompt = state["candidates"][candidate_id]["prompt"]
        for query_id in state["queries"][str(depth)]:
            if eval_key(candidate_id, query_id) in state.get("evaluations", {}):
                continue
            payload = GeneratePayload(
                depth=depth, candidate=candidate_id, prompt=prompt, query=query_id, icl=state["icl"][query_id]
            )
            sends.append(Send("generate", payload))
    return sends


def fan_out_evaluation(state: PromptOptState) -> list[Send]:
    """After generation and aspect selection: one evaluate branch per answer, in a fixed order."""
    depth = state["depth"]
    sends = []
    for candidate_id in state["frontier"]:
        prompt = state["candidates"][candidate_id]["prompt"]
        for query_id in state["queries"][str(depth)]:
            answer_id = eval_key(candidate_id, query_id)
            done = state.get("evaluations", {}).get(answer_id)
            if done is not None and done["reward"] is not None:
                continue
            payload = EvaluatePayload(
                depth=depth,
                candidate=candidate_id,
                prompt=prompt,
                query=query_id,
                icl=state["icl"][query_id],
                aspects=state["aspects"][query_id],
                answer_id=answer_id,
            )
            if done is not None:  # its verdict stayed unusable: asked again as a new sample
                payload["round"] = evaluation_round(state, answer_id)
            sends.append(Send("evaluate", payload))
    return sends or [Send("prune_beam", state)]


def dispatch_evaluation(state: PromptOptState) -> dict[str, Any]:
    """Join point: runs once after every generate branch and the aspect selection have finished."""
    return {}


def route_after_prune(state: PromptOptState) -> list[Send] | str:
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
    shape = state.get("strategy") or StrategyRecord(name="beam", beam_width=0, num_actions=0)  # older runs: beam
    strategy = strategy_for(shape["name"])
    sends = []
    for expansion in strategy.expansions(state["beam"], depth, shape["beam_width"], shape["num_actions"]):
        candidate_id = expansion.candidate_id
        record = state["candidates"][candidate_id]
        history = [state["candidates"][node]["prompt"] for node in path_ids(candidate_id, state["candidates"])]
        evaluations = [
            state["evaluations"][key]
            for query_id in state["queries"][str(record["depth"])]
            if (key := eval_key(candidate_id, query_id)) in state["evaluations"]
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
    return sends or "sample_queries"


def build_prompt_graph() -> StateGraph:
    """The uncompiled graph; nodes reach models and stores through the DrpoContext run context."""
    builder = StateGraph(PromptOptState, context_schema=DrpoContext, input_schema=PromptOptInput)
    builder.add_node("sample_queries", sample_queries)
    builder.add_node("retrieve_icl", retrieve_icl)
    builder.add_node("select_aspects", select_aspects)
    builder.add_node("generate", generate)
    builder.add_node("dispatch_evaluation", dispatch_evaluation)
    builder.add_node("evaluate", evaluate)
    builder.add_node("prune_beam", prune_beam)
    builder.add_node("review", review)
    builder.add_node("transition", transition)
    builder.add_node("finalize", finalize)
    builder.add_edge(START, "sample_queries")
    builder.add_edge("sample_queries", "retrieve_icl")
    builder.add_conditional_edges("retrieve_icl", fan_out_generation, ["select_aspects", "generate"])
    builder.add_edge("select_aspects", "dispatch_evaluation")
    builder.add_edge("generate", "dispatch_evaluation")
    builder.add_conditional_edges("dispatch_evaluation", fan_out_evaluation, ["evaluate", "prune_beam"])
    builder.add_edge("evaluate", "prune_beam")
    builder.add_conditional_edges(
        "prune_beam", route_after_prune, ["review", "transition", "finalize", "sample_queries"]
    )
    builder.add_conditional_edges("review", route_after_review, ["transition", "finalize", "sample_queries"])
    builder.add_edge("transition", "sample_queries")
    builder.add_edge("finalize", END)
    return builder


def compile_prompt_graph(checkpointer: BaseCheckpointSaver | None = None, **kwargs: Any) -> CompiledStateGraph:
    return build_prompt_graph().compile(checkpointer=checkpointer, **kwargs)
