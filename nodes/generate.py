"""One branch per (candidate, query): the base model answers with the candidate prompt and K examples."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from drpo.graph.context import DrpoContext, services_of
from drpo.graph.progress import AnswerEvent, emit
from drpo.graph.state import ROOT_ID, GeneratePayload, usage_update
from drpo.scoring import verdict_key
from drpo.serve.formatter import clean_completion, format_base_input


def generate(payload: GeneratePayload, runtime: Runtime[DrpoContext]) -> dict[str, Any]:
    services = services_of(runtime)
    caller = services.callers["base"]
    examples = services.examples(payload["icl"])
    query = services.query_text(payload["query"])
    base_input = format_base_input(payload["prompt"], examples, query, caller.spec.mode)
    request = list(base_input.messages) if base_input.mode == "chat" else base_input.text
    call = caller.complete(request, stop=base_input.stop)
    answer = clean_completion(call.text) if base_input.mode == "completion" else call.text.strip()
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
