"""Write the run's artifacts and return the best prompt.

The deployed prompt is the last prompt on the best-ranked path of the final beam (as in the reference),
or with ``search.validation`` the best prompt on the validation queries. Writing is idempotent, so a
finalize re-run after a crash produces the same files.
"""

from __future__ import annotations

import json
from typing import Any

from langgraph.runtime import Runtime

from drpo.graph.context import DrpoContext, Services, services_of
from drpo.graph.progress import FinishedEvent, emit
from drpo.graph.state import PromptOptState
from drpo.llm.pricing import cost_of
from drpo.nodes.validate import validation_summary
from drpo.scoring import verdict_key
from drpo.store.records import RunResult
from drpo.store.run_dir import atomic_write_text
from drpo.strategy import strategy_for


def _depth_table(state: PromptOptState, services: Services) -> list[dict[str, Any]]:
    depths = []
    validated = {
        entry["id"]: entry["validation"] for entries in state.get("validated", {}).values() for entry in entries
    }
    for depth_key in sorted(state.get("beams", {}), key=int):
        ranked = state["beams"][depth_key]
        review = state.get("reviews", {}).get(depth_key)
        chosen = state.get("validated", {}).get(depth_key)
        if review:
            beam = review["beam"]
        elif chosen:
            beam = [entry["id"] for entry in chosen if entry["kept"]]
        else:
            beam = [entry["id"] for entry in ranked if entry["kept"]]
        kept = set(beam)
        query_ids = state["queries"][depth_key]
        candidates = []
        for entry in ranked:
            record = state["candidates"][entry["id"]]
            per_query = []
            for query_id in query_ids:
                verdict = state["evaluations"].get(verdict_key(entry["id"], query_id))
                if verdict is None:
                    continue
                per_query.append(
                    {
                        "query_id": query_id,
                        "aspects": state["aspects"][query_id]["aspects"],
                        "scores": verdict["scores"],
                        "rationales": verdict["rationales"],
                        "reward": verdict["reward"],
                        "answer_id": verdict["answer_id"],
                        "answer_preview": verdict["answer_preview"],
                        "judge_attempts": verdict["attempts"],
                        **{
                            key: verdict[key]  # type: ignore[literal-required]
                            for key in ("written", "expected_fallbacks", "truncated")
                            if key in verdict
                        },
                    }
                )
            candidates.append(
                {
                    "id": entry["id"],
                    "parent": record["parent"],
                    "origin": record["origin"],
                    "note": record["note"],
                    "prompt": record["prompt"],
                    "reward": entry["reward"],
                    "path_value": entry["path_value"],
                    **({"validation": validated[entry["id"]]} if entry["id"] in validated else {}),
                    "kept": entry["id"] in kept,
                    "evaluations": per_query,
                }
            )
        depths.append(
            {
                "depth": int(depth_key),
                "queries": [{"id": qid, "text": services.query_text(qid)} for qid in query_ids],
                "beam": beam,
                "candidates": candidates,
            }
        )
    return depths


def build_result(state: PromptOptState, services: Services) -> RunResult:
    settings = services.settings
    validation = validation_summary(state, settings.search.validation_margin)
    if validation is not None:  # the beam is ranked on validation, and keeps the best validated prompt first
        best_id = state["beam"][0]
        validation["queries"] = [{"id": qid, "text": services.query_text(qid)} for qid in validation["queries"]]
    else:
        best_id = strategy_for(settings.search.strategy).final_candidate(state)
    best_depth = str(state["candidates"][best_id]["depth"])
    best_entry = next(entry for entry in state["beams"][best_depth] if entry["id"] == best_id)
    return {  # type: ignore[typeddict-item]
        "run_id": services.run_dir.run_id,
        "status": "done",
        "best_prompt": state["candidates"][best_id]["prompt"],
        "best": {
            "candidate_id": best_id,
            "depth": int(best_depth),
            "reward": best_entry["reward"],
            "path_value": best_entry["path_value"],
        },
        "stop_reason": state.get("stop_reason", ""),
        **({"validation": validation} if validation is not None else {}),
        "serving": {
            "icl_collection": services.icl_store.name,
            "embedding_model": settings.embedding_model,
            "icl_k": settings.search.icl_k,
            "base_mode": settings.roles.base.mode,
        },
        "search": settings.search.model_dump(mode="json"),
        "reward": settings.reward.model_dump(mode="json"),
        "depths_run": state["depth"],
        "max_depth": state["max_depth"],
        "depth_increases": state.get("depth_increases", 0),
        "aspects": {
            qid: {"query": services.query_text(qid), **record} for qid, record in sorted(state["aspects"].items())
        },
        "depths": _depth_table(state, services),
        "failures": state.get("failures", []),
        "truncated_answers": sum(1 for record in state.get("evaluations", {}).values() if record.get("truncated")),
        **({"judge_note": note} if (note := undiscriminating_judge(state)) else {}),
        "reviews": dict(sorted(state.get("reviews", {}).items(), key=lambda item: int(item[0]))),
        "usage": {role: dict(sorted(usage.items())) for role, usage in sorted(state.get("usage", {}).items())},
        "usage_by_depth": {
            depth: {role: dict(sorted(usage.items())) for role, usage in sorted(roles.items())}
            for depth, roles in sorted(state.get("usage_by_depth", {}).items(), key=lambda item: int(item[0]))
        },
        "cost": cost_of(state.get("usage", {}), settings),
    }


def undiscriminating_judge(state: PromptOptState) -> str | None:
    """A note when every judged answer of every candidate got one and the same reward: the search then
    had no signal, and the prompt it returns is a tie-break, which the result must not present as a finding."""
    rewards = {record["reward"] for record in state.get("evaluations", {}).values() if record["reward"] is not None}
    candidates = {record["candidate"] for record in state.get("evaluations", {}).values()}
    if len(rewards) != 1 or len(candidates) < 2:
        return None
    return (
        f"every judged answer got the same reward ({rewards.pop():.2f}): the judge told no candidate apart, so "
        "the returned prompt is a tie-break, not a finding"
    )


def write_answers(services: Services) -> None:
    lines = [json.dumps(record, ensure_ascii=False) for _key, record in sorted(services.journal.answers())]
    atomic_write_text(services.run_dir.answers, "\n".join(lines) + ("\n" if lines else ""))


def write_prompt_result(state: PromptOptState, services: Services) -> RunResult:
    """result.json and answers.jsonl from a final state (also how a deleted result.json is rebuilt)."""
    result = build_result(state, services)
    write_answers(services)
    services.run_dir.write_result(result)
    return result


def finalize(state: PromptOptState, runtime: Runtime[DrpoContext]) -> dict[str, Any]:
    result = write_prompt_result(state, services_of(runtime))
    emit(
        FinishedEvent(
            event="finished",
            best_candidate=result["best"]["candidate_id"],
            path_value=result["best"]["path_value"],
        )
    )
    return {"best": {"candidate_id": result["best"]["candidate_id"], "prompt": result["best_prompt"]}}
