"""The one place that builds the base model's input, for optimization and for serving alike.

Chat models get the system prompt as a system message and the ICL examples as alternating
user/assistant turns. Completion models get a plain-text template with query/answer markers
and stop sequences. Keeping both here means what was optimized is exactly what runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from drpo.prompts import (
    BASE_COMPLETION,
    BASE_COMPLETION_EXAMPLE,
    COMPLETION_STOP_SEQUENCES,
    render,
)
from drpo.store.icl_store import IclExample

BaseMode = Literal["chat", "completion"]


@dataclass(frozen=True)
class BaseInput:
    """What the base model receives: chat messages or a completion string, plus stop sequences."""

    mode: BaseMode
    messages: tuple[BaseMessage, ...] = ()
    text: str = ""
    stop: tuple[str, ...] = ()


def chat_messages(system_prompt: str, examples: list[IclExample], query: str) -> list[BaseMessage]:
    messages: list[BaseMessage] = [SystemMessage(content=system_prompt)]
    for example in examples:
        messages.append(HumanMessage(content=example.query))
        messages.append(AIMessage(content=example.answer))
    messages.append(HumanMessage(content=query))
    return messages


def completion_text(system_prompt: str, examples: list[IclExample], query: str) -> str:
    shots = "".join(render(BASE_COMPLETION_EXAMPLE, query=example.query, answer=example.answer) for example in examples)
    return render(BASE_COMPLETION, system_prompt=system_prompt, examples=shots, query=query)


def format_base_input(system_prompt: str, examples: list[IclExample], query: str, mode: BaseMode = "chat") -> BaseInput:
    """Build the base model's input for one query."""
    if mode == "chat":
        return BaseInput(mode="chat", messages=tuple(chat_messages(system_prompt, examples, query)))
    if mode == "completion":
        return BaseInput(
            mode="completion",
            text=completion_text(system_prompt, examples, query),
            stop=COMPLETION_STOP_SEQUENCES,
        )
    raise ValueError(f"unknown base mode {mode!r}")


def clean_completion(text: str) -> str:
    """Trim a completion at the end marker (servers that ignore stop sequences still end cleanly)."""
    for stop in COMPLETION_STOP_SEQUENCES:
        index = text.find(stop)
        if index >= 0:
            text = text[:index]
    return text.strip()
