"""Finish an evaluation: eval.json (also the run's result.json), answers.jsonl and the report files."""

from __future__ import annotations

import json
from typing import Any

from langgraph.runtime import Runtime

from drpo.errors import SearchStalled
from drpo.eval.report import write_report
from drpo.eval.summary import EvalRecords, EvalSetup, EvalSummary, summarize
from drpo.graph.context import DrpoContext, Services, services_of
from drpo.graph.state import EvalState
from drpo.llm.pricing import cost_of
from drpo.store.run_dir import atomic_write_json, atomic_write_text


def eval_finalize(state: EvalState, runtime: Runtime[DrpoContext]) -> dict[str, Any]:
    services = services_of(runtime)
    ungraded = ungraded_systems(state)
    if ungraded:  # a table of dashes is no result: stop failed, resumably, as a stalled optimization does
        evaluator = services.settings.roles.evaluator
        last = next((f["last_error"] for f in reversed(state.get("failures", [])) if f["role"] == "evaluator"), "")
        raise SearchStalled(
            f"role evaluator ({evaluator.provider}:{evaluator.model}): every grade of {', '.join(ungraded)} stayed "
            f"unusable after the re-asks; last error: {last[:300] or 'no usable output'}"
        )
    write_eval_result(state, services)
    return {"finished": True}


def ungraded_systems(state: EvalState) -> list[str]:
    """Systems with answers graded but not one grade usable."""
    by_system: dict[str, list[bool]] = {}
    for grade in state.get("grades", {}).values():
        by_system.setdefault(grade["system"], []).append(grade["ok"])
    return [system for system, oks in by_system.items() if oks and not any(oks)]


def write_eval_result(state: EvalState, services: Services) -> EvalSummary:
    """eval.json (= result.json), answers.jsonl and the report from a final state; also the rebuild path."""
    resources = services.evaluation
    assert resources is not None
    settings = resources.settings
    systems = [
        {
            "name": name,
            "label": system.label,
            "k": system.k,
            "seen_queries_known": system.seen_known,
            "base_model": resources.answerers[name].model_id,
        }
        for name, system in resources.systems.items()
    ]
    setup = EvalSetup(
        run_id=services.run_dir.run_id,
        systems=systems,
        baseline=settings.baseline or systems[0]["name"],
        pairwise=settings.pairwise,
        judge=resources.judge.model_id,
        scoring=settings.scoring,
        bootstrap=settings.bootstrap,
        seed=settings.sample_seed,
    )
    records = EvalRecords(
        queries=resources.queries,
        items=state.get("items", []),
        excluded=state.get("excluded", {}),
        answers=dict(state.get("answers", {})),
        grades=dict(state.get("grades", {})),
        pairs=dict(state.get("pairs", {})),
    )
    summary = summarize(
        setup,
        records,
        usage=dict(state.get("usage", {})),
        failures=list(state.get("failures", [])),
        cost=cost_of(state.get("usage", {}), services.settings),
    )
    root = services.run_dir.root
    lines = [json.dumps(record, ensure_ascii=False) for _key, record in sorted(services.journal.answers())]
    atomic_write_text(root / "answers.jsonl", "\n".join(lines) + ("\n" if lines else ""))
    write_report(summary, root)
    atomic_write_json(root / "eval.json", summary)
    services.run_dir.write_result(summary)  # type: ignore[arg-type]
    return summary
