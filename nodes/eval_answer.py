"""One system answers one evaluation query through the serving path (the aligned model's exact input)."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from drpo.graph.context import DrpoContext, services_of
from drpo.graph.progress import EvalStepEvent, emit
from drpo.graph.state import EvalAnswerRecord, EvalItemPayload, item_key
from drpo.llm.usage import estimate_tokens


def eval_answer(payload: EvalItemPayload, runtime: Runtime[DrpoContext]) -> dict[str, Any]:
    services = services_of(runtime)
    resources = services.evaluation
    assert resources is not None
    system = resources.systems[payload["system"]]
    caller = resources.answerers[payload["system"]]
    aligned = system.aligned(caller.model)
    query = resources.queries[payload["query"]].text
    request, stop = aligned.request_for(query)
    call = caller.complete(request, stop=stop)
    answer = aligned.clean_reply(call.text)
    key = item_key(payload["system"], payload["query"])
    answer_id = f"eval|{key}"
    services.journal.put_answer(
        answer_id,
        {
            "answer_id": answer_id,
            "system": payload["system"],
            "query": payload["query"],
            "answer": answer,
            "truncated": call.truncated,  # cut at max_tokens: the judge grades a cut answer
        },
    )
    examples = aligned.examples_for(query)
    shown = system.system_prompt + "".join(example.query + example.answer for example in examples)
    record = EvalAnswerRecord(
        system=payload["system"],
        query=payload["query"],
        answer_id=answer_id,
        output_tokens=int(call.usage.get("output_tokens", 0)) or estimate_tokens(answer),
        alignment_tokens=estimate_tokens(shown),
    )
    if call.truncated:
        record["truncated"] = True
    emit(EvalStepEvent(event="eval_step", phase="answer", system=payload["system"], query=payload["query"]))
    return {"answers": {key: record}, "usage": {"base": call.usage}}
