"""One branch per (candidate, query): the base model answers with the candidate prompt and K examples."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from drpo.graph.context import DrpoContext, services_of
from drpo.graph.progress import AnswerEvent, emit
from drpo.graph.state import ROOT_ID, GeneratePayload, usage_update
from drpo.nodes.answering import ask_base_model
from drpo.scoring import verdict_key


def generate(payload: GeneratePayload, runtime: Runtime[DrpoContext]) -> dict[str, Any]:
    services = services_of(runtime)
    answer, call = ask_base_model(services, payload["prompt"], payload["query"], payload["icl"])
    answer_id = verdict_key(payload["candidate"], payload["query"])
    services.journal.put_answer(
        answer_id,
        {
            "answer_id": answer_id,
            "candidate": payload["candidate"],
            "query": payload["query"],
            "depth": payload["depth"],
            "answer": answer,
            "truncated": call.truncated,  # cut at the base role's max_tokens: the judge grades a cut answer
        },
    )
    emit(AnswerEvent(event="answer", depth=payload["depth"], candidate=payload["candidate"], query=payload["query"]))
    update = usage_update(payload["depth"], {"base": call.usage})
    if payload["candidate"] == ROOT_ID:  # the initial prompt's answers are relative scoring's references
        update["references"] = {payload["query"]: answer_id}
    return update
