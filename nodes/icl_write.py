"""Write the optimized ICL examples to a Chroma collection named after the run, and the run's result."""

from __future__ import annotations

import json
from typing import Any

from langgraph.runtime import Runtime

from drpo.graph.context import DrpoContext, Services, services_of
from drpo.graph.state import IclOptState
from drpo.nodes.icl_refine import answer_text
from drpo.store.icl_store import IclExample, IclStore, icl_collection_name
from drpo.store.records import IclRunResult


def build_icl_result(state: IclOptState, services: Services, collection: str) -> IclRunResult:
    examples = []
    for example_id, record in state["examples"].items():
        best_id = record["beam"][0]
        best = next(answer for answer in record["answers"] if answer["answer_id"] == best_id)
        source = record["answers"][0]
        examples.append(
            {
                "id": example_id,
                "query": record["query"],
                "answer": answer_text(services, example_id, best_id),
                "source_reward": source["reward"],
                "final_reward": best["reward"],
                "rounds": record["round"],
                "stop_reason": record["stop_reason"],
                "aspects": (record["aspects"] or {}).get("aspects", []),
                "history": record["answers"],
            }
        )
    return {  # type: ignore[typeddict-item]
        "run_id": services.run_dir.run_id,
        "kind": "icl",
        "status": "done",
        "collection": collection,
        "icl_search": services.settings.icl_search.model_dump(mode="json"),
        "examples": examples,
        "failures": state.get("failures", []),
        "usage": {role: dict(sorted(u.items())) for role, u in sorted(state.get("usage", {}).items())},
    }


def write_icl_collection(state: IclOptState, runtime: Runtime[DrpoContext]) -> dict[str, Any]:
    services = services_of(runtime)
    collection = icl_collection_name(services.run_dir.run_id)
    result = build_icl_result(state, services, collection)
    store = IclStore(services.chroma_client, collection, services.embedder)
    store.add(
        [IclExample(id=item["id"], query=item["query"], answer=item["answer"]) for item in result["examples"]],
        metadata=[
            {
                "source_run": services.run_dir.run_id,
                "final_reward": item["final_reward"] if item["final_reward"] is not None else -1.0,
                "source_reward": item["source_reward"] if item["source_reward"] is not None else -1.0,
                "score_history": json.dumps([answer["reward"] for answer in item["history"]]),
            }
            for item in result["examples"]
        ],
    )
    services.run_dir.write_result(result)
    return {"collection": collection}
