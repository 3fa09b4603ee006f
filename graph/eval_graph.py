"""The evaluation graph: every system answers every query through the serving path, the judge grades
every answer (and, in pairwise mode, every pair in both orders), then the statistics and report.

eval_plan -> Send(eval_answer) per (system, query) -> eval_dispatch -> Send(eval_grade) per answer
[+ Send(eval_pair) per (system, query)] -> eval_finalize
"""

from __future__ import annotations

from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Send

from drpo.graph.context import DrpoContext
from drpo.graph.state import EvalItemPayload, EvalState, item_key
from drpo.nodes.eval_answer import eval_answer
from drpo.nodes.eval_finalize import eval_finalize
from drpo.nodes.eval_grade import eval_grade
from drpo.nodes.eval_pair import eval_pair
from drpo.nodes.eval_plan import eval_plan


def _pending(state: EvalState, systems: list[str]) -> list[tuple[str, str]]:
    excluded = state.get("excluded", {})
    return [
        (system, query_id)
        for system in systems
        for query_id in state.get("items", [])
        if query_id not in excluded.get(system, [])
    ]


def fan_out_answers(state: EvalState) -> list[Send] | str:
    """One answer branch per (system, query) not answered yet, in a fixed order."""
    sends = [
        Send("eval_answer", EvalItemPayload(system=system, query=query_id))
        for system, query_id in _pending(state, state.get("systems", []))
        if item_key(system, query_id) not in state.get("answers", {})
    ]
    return sends or "eval_dispatch"


def eval_dispatch(state: EvalState) -> dict[str, Any]:
    """Join point: every answer is in before grading starts."""
    return {}


def fan_out_grading(state: EvalState) -> list[Send] | str:
    """One grade branch per answer, and in pairwise mode one pair branch per (system, query)."""
    answers, grades, pairs = state.get("answers", {}), state.get("grades", {}), state.get("pairs", {})
    systems = state.get("systems", [])
    regrade = state.get("regrade_round", 0)

    def needs_grade(key: str) -> bool:  # not graded yet, or unusable and a resume asked for a new round
        return key not in grades or (not grades[key]["ok"] and grades[key].get("round", 0) < regrade)

    sends = [
        Send("eval_grade", EvalItemPayload(system=system, query=query_id, round=regrade))
        for system, query_id in _pending(state, systems)
        if item_key(system, query_id) in answers and needs_grade(item_key(system, query_id))
    ]
    reference = state.get("pairwise")
    if reference is not None:
        sends += [
            Send("eval_pair", EvalItemPayload(system=system, query=query_id))
            for system, query_id in _pending(state, [name for name in systems if name != reference])
            if item_key(system, query_id) in answers
            and item_key(reference, query_id) in answers
            and item_key(system, query_id) not in pairs
        ]
    return sends or "eval_finalize"


def build_eval_graph() -> StateGraph:
    builder = StateGraph(EvalState, context_schema=DrpoContext)
    builder.add_node("eval_plan", eval_plan)
    builder.add_node("eval_answer", eval_answer)
    builder.add_node("eval_dispatch", eval_dispatch)
    builder.add_node("eval_grade", eval_grade)
    builder.add_node("eval_pair", eval_pair)
    builder.add_node("eval_finalize", eval_finalize)
    builder.add_edge(START, "eval_plan")
    builder.add_conditional_edges("eval_plan", fan_out_answers, ["eval_answer", "eval_dispatch"])
    builder.add_edge("eval_answer", "eval_dispatch")
    builder.add_conditional_edges("eval_dispatch", fan_out_grading, ["eval_grade", "eval_pair", "eval_finalize"])
    builder.add_edge("eval_grade", "eval_finalize")
    builder.add_edge("eval_pair", "eval_finalize")
    builder.add_edge("eval_finalize", END)
    return builder


def compile_eval_graph(checkpointer: BaseCheckpointSaver | None = None, **kwargs: Any) -> CompiledStateGraph:
    return build_eval_graph().compile(checkpointer=checkpointer, **kwargs)
