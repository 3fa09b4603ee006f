"""Use a finished drpo run as the model node of a LangGraph agent with conversation memory.

python examples/aligned_langgraph_agent.py RUN_ID [--runs-dir drpo_runs] [--local-model smollm2-135m]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph

from drpo import AlignedChatModel
from drpo.serve.runs import run_base_model


def build_agent(aligned: AlignedChatModel):
    def assistant(state: MessagesState) -> dict:
        return {"messages": [aligned.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("assistant", assistant)
    builder.add_edge(START, "assistant")
    return builder.compile(checkpointer=InMemorySaver())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_id")
    parser.add_argument("--runs-dir", default="drpo_runs")
    parser.add_argument("--local-model", default=None)
    args = parser.parse_args()
    llm, _server_pool = run_base_model(Path(args.run_id), Path(args.runs_dir), args.local_model)
    agent = build_agent(AlignedChatModel.from_run(args.run_id, llm, runs_dir=args.runs_dir))
    config = {"configurable": {"thread_id": "demo"}}
    for question in ["What is a good first programming language?", "Why that one?"]:
        reply = agent.invoke({"messages": [HumanMessage(content=question)]}, config)["messages"][-1]
        print(f"you> {question}\nassistant> {reply.content}\n")


if __name__ == "__main__":
    main()
