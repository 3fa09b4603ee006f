"""The ICL-optimization graph (Algorithm 1): every example is refined in parallel, one round per step.

icl_plan -> Send(icl_refine) per unfinished example -> icl_plan ... -> write_icl_collection
"""

from __future__ import annotations

from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Send

from drpo.graph.context import DrpoContext
from drpo.graph.state import IclOptState, IclRefinePayload
from drpo.nodes.icl_plan import icl_plan
from drpo.nodes.icl_refine import icl_refine
from drpo.nodes.icl_write import write_icl_collection


def fan_out_examples(state: IclOptState) -> list[Send] | str:
    """One refine branch per unfinished example, in a fixed order; write the collection when all are done."""
    pending = [record for _id, record in sorted(state["examples"].items()) if not record["done"]]
    if not pending:
        return "write_icl_collection"
    return [Send("icl_refine", IclRefinePayload(round=state["round"], example=record)) for record in pending]


def build_icl_graph() -> StateGraph:
    builder = StateGraph(IclOptState, context_schema=DrpoContext)
    builder.add_node("icl_plan", icl_plan)
    builder.add_node("icl_refine", icl_refine)
    builder.add_node("write_icl_collection", write_icl_collection)
    builder.add_edge(START, "icl_plan")
    builder.add_conditional_edges("icl_plan", fan_out_examples, ["icl_refine", "write_icl_collection"])
    builder.add_edge("icl_refine", "icl_plan")
    builder.add_edge("write_icl_collection", END)
    return builder


def compile_icl_graph(checkpointer: BaseCheckpointSaver | None = None, **kwargs: Any) -> CompiledStateGraph:
    return build_icl_graph().compile(checkpointer=checkpointer, **kwargs)
