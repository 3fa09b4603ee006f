"""The base model's answer to a query under a prompt with retrieved examples: the one request the generate
node makes, shared with the run driver, which asks a new run's first answers before LangGraph is imported
(the same request gives the same journal key, so the node then reads the reply instead of asking again).
No LangGraph import here, for that reason."""

from __future__ import annotations

from drpo.graph.context import Services
from drpo.llm.caller import CallOutcome
from drpo.serve.formatter import clean_completion, format_base_input


def ask_base_model(services: Services, prompt: str, query_id: str, icl_ids: list[str]) -> tuple[str, CallOutcome]:
    """The cleaned answer and the call it came from."""
    caller = services.callers["base"]
    examples = services.examples(icl_ids)
    base_input = format_base_input(prompt, examples, services.query_text(query_id), caller.spec.mode)
    request = list(base_input.messages) if base_input.mode == "chat" else base_input.text
    call = caller.complete(request, stop=base_input.stop)
    answer = clean_completion(call.text) if base_input.mode == "completion" else call.text.strip()
    return answer, call
