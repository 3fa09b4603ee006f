"""An in-process scripted chat model for unit tests: deterministic replies and a call log."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, BaseLLM
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult, Generation, GenerationChunk, LLMResult
from pydantic import PrivateAttr

from support.responder import respond


def joined(messages: list[BaseMessage]) -> str:
    return "\n".join(f"{message.type}: {message.content}" for message in messages)


class ScriptedChatModel(BaseChatModel):
    """Replies with ``responder(text, call_index_for_text)``; records every call it receives.

    ``fail_on`` lets a test raise inside a call (to simulate a crash at a chosen moment).
    """

    responder: Callable[[str, int], str] = respond
    drpo_accepts_seed: bool = True
    fail_on: Callable[[str, int], bool] | None = None
    finish_reason_of: Callable[[str, int], str] | None = None  # e.g. "length" for a reply cut at max_tokens
    _log: list[str] = PrivateAttr(default_factory=list)
    _finished: list[str] = PrivateAttr(default_factory=list)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    @property
    def calls(self) -> list[str]:
        """Every request received, including those that raised."""
        with self._lock:
            return list(self._log)

    @property
    def finished(self) -> list[str]:
        """Requests that returned a reply."""
        with self._lock:
            return list(self._finished)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        text = joined(messages)
        with self._lock:
            self._log.append(text)
            count = len(self._log)
        if self.fail_on is not None and self.fail_on(text, count):
            raise RuntimeError("injected failure")
        sample = int(kwargs.get("seed", 0))
        reply = self.responder(text, sample)
        with self._lock:
            self._finished.append(text)
        finish = self.finish_reason_of(text, count) if self.finish_reason_of is not None else "stop"
        message = AIMessage(
            content=reply,
            response_metadata={"finish_reason": finish},
            usage_metadata={
                "input_tokens": len(text) // 4,
                "output_tokens": len(reply) // 4,
                "total_tokens": len(text) // 4 + len(reply) // 4,
            },
        )
        return ChatResult(generations=[ChatGeneration(message=message)])


class ScriptedCompletionModel(BaseLLM):
    """A completion model that records each prompt and answers, then rambles past the end marker."""

    _prompts: list[str] = PrivateAttr(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted-completion"

    @property
    def prompts(self) -> list[str]:
        return list(self._prompts)

    def _generate(
        self,
        prompts: list[str],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> LLMResult:
        self._prompts.extend(prompts)
        return LLMResult(generations=[[Generation(text=f" {respond(p)}\n<END>\n# Query: more")] for p in prompts])

    def _stream(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[GenerationChunk]:
        self._prompts.append(prompt)
        text = f" {respond(prompt)}\n<END>\n# Query: more"
        for start in range(0, len(text), 3):
            yield GenerationChunk(text=text[start : start + 3])
