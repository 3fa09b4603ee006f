"""The aligned model: a LangChain chat model that serves a finished run's optimized prompt.

For every request it retrieves the K in-context examples nearest to the user's query from the
run's Chroma collection, puts the optimized system prompt first, and calls the wrapped model
(chat or completion) with input built by :mod:`drpo.serve.formatter`, the same code that built the
base model's input during optimization, so what was optimized is exactly what runs.

The caller's own system messages are kept: their text is appended after the optimized prompt,
separated by a blank line. Earlier conversation turns go between the examples and the last
user message.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, BaseLanguageModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field

from drpo.prompts import COMPLETION_STOP_SEQUENCES
from drpo.serve.formatter import clean_completion, format_base_input
from drpo.store.icl_store import IclExample


def _text(message: BaseMessage) -> str:
    return message.content if isinstance(message.content, str) else str(message.content)


def split_conversation(messages: list[BaseMessage]) -> tuple[list[str], list[BaseMessage], str]:
    """(caller system texts, earlier turns, last user query)."""
    if not messages or not isinstance(messages[-1], HumanMessage):
        raise ValueError("the aligned model needs the conversation to end with a user message")
    systems = [_text(m) for m in messages[:-1] if isinstance(m, SystemMessage)]
    history = [m for m in messages[:-1] if not isinstance(m, SystemMessage)]
    return systems, history, _text(messages[-1])


class AlignedChatModel(BaseChatModel):
    """Wraps any LangChain chat or completion model with a DRPO run's prompt and retrieved examples."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    llm: BaseLanguageModel = Field(description="The wrapped model (chat or completion)")
    system_prompt: str = Field(description="The optimized system prompt")
    retriever: Any = Field(default=None, exclude=True, description="IclStore used for retrieval")
    k: int = Field(2, ge=0, description="Examples retrieved per request")
    run_id: str = ""

    @property
    def _llm_type(self) -> str:
        return "drpo-aligned"

    @property
    def is_chat(self) -> bool:
        return isinstance(self.llm, BaseChatModel)

    @classmethod
    def from_run(
        cls,
        run: str | Path,
        llm: BaseLanguageModel,
        *,
        runs_dir: str | Path = "drpo_runs",
        k: int | None = None,
        embedder: Any = None,
    ) -> AlignedChatModel:
        """Load a finished run by id (under ``runs_dir``) or by its directory."""
        from drpo.serve.runs import open_run_for_serving

        served = open_run_for_serving(Path(run), Path(runs_dir), embedder=embedder)
        return cls(
            llm=llm,
            system_prompt=served.system_prompt,
            retriever=served.store,
            k=served.k if k is None else k,
            run_id=served.run_id,
        )

    def examples_for(self, query: str) -> list[IclExample]:
        if self.retriever is None or self.k <= 0:
            return []
        return list(self.retriever.get(self.retriever.nearest_ids(query, self.k)))

    def build_request(self, messages: list[BaseMessage]) -> list[BaseMessage] | str:
        """Exactly what the wrapped model receives for this conversation."""
        systems, history, query = split_conversation(messages)
        system = "\n\n".join([self.system_prompt, *systems])
        mode = "chat" if self.is_chat else "completion"
        built = format_base_input(system, self.examples_for(query), query, mode)
        if mode == "completion":
            return built.text
        chat = list(built.messages)
        return [*chat[:-1], *history, chat[-1]]

    def _stops(self, stop: list[str] | None) -> list[str] | None:
        if self.is_chat:
            return stop
        return [*COMPLETION_STOP_SEQUENCES, *(stop or [])]

    def _to_result(self, output: Any) -> ChatResult:
        if isinstance(output, BaseMessage):
            message = AIMessage(
                content=output.content,
                response_metadata=getattr(output, "response_metadata", {}),
                usage_metadata=getattr(output, "usage_metadata", None),
            )
        else:
            message = AIMessage(content=clean_completion(str(output)))
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request = self.build_request(messages)
        output = self.llm.invoke(request, stop=self._stops(stop), **kwargs)
        return self._to_result(output)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request = await asyncio.to_thread(self.build_request, messages)
        output = await self.llm.ainvoke(request, stop=self._stops(stop), **kwargs)
        return self._to_result(output)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        request = self.build_request(messages)
        cutter = _EndMarkerCutter(active=not self.is_chat)
        for piece in self.llm.stream(request, stop=self._stops(stop), **kwargs):
            text = cutter.feed(_piece_text(piece))
            if text:
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=text))
                if run_manager:
                    run_manager.on_llm_new_token(text, chunk=chunk)
                yield chunk
            if cutter.done:
                break
        if tail := cutter.flush():
            yield ChatGenerationChunk(message=AIMessageChunk(content=tail))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        request = await asyncio.to_thread(self.build_request, messages)
        cutter = _EndMarkerCutter(active=not self.is_chat)
        async for piece in self.llm.astream(request, stop=self._stops(stop), **kwargs):
            text = cutter.feed(_piece_text(piece))
            if text:
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=text))
                if run_manager:
                    await run_manager.on_llm_new_token(text, chunk=chunk)
                yield chunk
            if cutter.done:
                break
        if tail := cutter.flush():
            yield ChatGenerationChunk(message=AIMessageChunk(content=tail))


def _piece_text(piece: Any) -> str:
    if isinstance(piece, BaseMessage):
        return _text(piece)
    return str(piece)


class _EndMarkerCutter:
    """Streams completion text up to the end marker, holding back a possible partial marker."""

    def __init__(self, active: bool) -> None:
        self.active = active
        self.done = False
        self._buffer = ""
        self._started = False

    def feed(self, text: str) -> str:
        if not self.active:
            return text
        self._buffer += text
        for marker in COMPLETION_STOP_SEQUENCES:
            index = self._buffer.find(marker)
            if index >= 0:
                self.done = True
                out, self._buffer = self._buffer[:index].rstrip(), ""
                return self._lstrip(out)
        keep = max(len(marker) for marker in COMPLETION_STOP_SEQUENCES) - 1
        out, self._buffer = self._buffer[:-keep], self._buffer[-keep:]
        return self._lstrip(out)

    def flush(self) -> str:
        """What is left when the stream ended without an end marker."""
        out, self._buffer = self._buffer.rstrip(), ""
        return "" if self.done else self._lstrip(out)

    def _lstrip(self, text: str) -> str:
        if not self._started:
            text = text.lstrip()
            self._started = bool(text)
        return text
