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
import warnings
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, BaseLanguageModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from pydantic import ConfigDict, Field, model_validator

from drpo.prompts import COMPLETION_STOP_SEQUENCES
from drpo.serve.formatter import clean_completion, format_base_input
from drpo.settings import DEFAULT_RUNS_DIR
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
    base_mode: Literal["chat", "completion"] | None = Field(
        None, description="Input format the run was optimized with (default: the wrapped model's kind)"
    )

    @model_validator(mode="after")
    def _check_mode(self) -> AlignedChatModel:
        if self.base_mode == "chat" and not self.is_chat:
            warnings.warn(
                f"run {self.run_id or '?'} was optimized for a chat model but wraps a completion model: "
                "its input is sent in the completion format instead",
                stacklevel=2,
            )
        return self

    @property
    def _llm_type(self) -> str:
        return "drpo-aligned"

    @property
    def is_chat(self) -> bool:
        return isinstance(self.llm, BaseChatModel)

    @property
    def mode(self) -> Literal["chat", "completion"]:
        """The input format sent: the run's recorded mode, unless the wrapped model cannot take it.
        A chat model takes the completion format as one user message, so a completion-optimized run
        keeps its exact input on a chat model too."""
        if self.base_mode == "completion" or not self.is_chat:
            return "completion"
        return "chat"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        """Traces name the wrapped model, so LangSmith shows what actually answered."""
        params = LangSmithParams(ls_provider="drpo", ls_model_type="chat")
        name = kwargs.get("model") or getattr(self.llm, "model_name", None) or getattr(self.llm, "model", None)
        params["ls_model_name"] = str(name) if name else "drpo-aligned"
        for key in ("temperature", "max_tokens"):
            value = getattr(self.llm, key, None)
            if isinstance(value, int | float):
                params[f"ls_{key}"] = value  # type: ignore[literal-required]
        if stop:
            params["ls_stop"] = stop
        return params

    def bind_tools(
        self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Tools go to the wrapped chat model; the optimized prompt and examples still go first."""
        if not self.is_chat:
            raise NotImplementedError("the wrapped completion model cannot call tools")
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        wrapped = self.llm.bind_tools(tools, **kwargs)  # type: ignore[attr-defined]
        # The wrapped model formats the tools its own way; the aligned model forwards those call kwargs.
        return self.bind(**getattr(wrapped, "kwargs", {}))

    @property
    def _target(self) -> Any:
        return self.llm

    @classmethod
    def from_run(
        cls,
        run: str | Path,
        llm: BaseLanguageModel,
        *,
        runs_dir: str | Path = DEFAULT_RUNS_DIR,
        k: int | None = None,
        embedder: Any = None,
        mode: Literal["chat", "completion"] | None = None,
    ) -> AlignedChatModel:
        """Load a finished run by id (under ``runs_dir``) or by its directory. The input format is the
        one the run was optimized with (``mode`` overrides it)."""
        from drpo.serve.runs import open_run_for_serving

        served = open_run_for_serving(Path(run), Path(runs_dir), embedder=embedder)
        return cls(
            llm=llm,
            system_prompt=served.system_prompt,
            retriever=served.store,
            k=served.k if k is None else k,
            run_id=served.run_id,
            base_mode=mode or served.base_mode,  # type: ignore[arg-type]
        )

    def examples_for(self, query: str) -> list[IclExample]:
        if self.retriever is None or self.k <= 0:
            return []
        return list(self.retriever.get(self.retriever.nearest_ids(query, self.k)))

    def build_request(self, messages: list[BaseMessage]) -> list[BaseMessage] | str:
        """Exactly what the wrapped model receives for this conversation."""
        systems, history, query = split_conversation(messages)
        system = "\n\n".join([self.system_prompt, *systems])
        mode = self.mode
        built = format_base_input(system, self.examples_for(query), query, mode)
        if mode == "completion":
            return built.text
        chat = list(built.messages)
        return [*chat[:-1], *history, chat[-1]]

    def request_for(self, query: str) -> tuple[list[BaseMessage] | str, tuple[str, ...]]:
        """What the wrapped model receives for one user query, and the stop sequences sent with it:
        the evaluation sends exactly this, so what is measured is what is served."""
        return self.build_request([HumanMessage(content=query)]), tuple(self._stops(None) or ())

    def clean_reply(self, text: str) -> str:
        """The reply as serving returns it (cut at the end marker in the completion format)."""
        return clean_completion(text) if self.mode == "completion" else text.strip()

    def _stops(self, stop: list[str] | None) -> list[str] | None:
        if self.mode == "chat":
            return stop
        return [*COMPLETION_STOP_SEQUENCES, *(stop or [])]

    def _to_result(self, output: Any) -> ChatResult:
        if isinstance(output, AIMessage) and self.mode == "chat":
            message = output  # content, tool calls, usage and metadata as the wrapped model gave them
        else:
            text = output.content if isinstance(output, BaseMessage) else output
            message = AIMessage(
                content=clean_completion(str(text)),
                usage_metadata=getattr(output, "usage_metadata", None),
                response_metadata=getattr(output, "response_metadata", {}) or {},
            )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request = self.build_request(messages)
        output = self._target.invoke(request, stop=self._stops(stop), **kwargs)
        return self._to_result(output)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request = await asyncio.to_thread(self.build_request, messages)
        output = await self._target.ainvoke(request, stop=self._stops(stop), **kwargs)
        return self._to_result(output)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        request = self.build_request(messages)
        cutter = _EndMarkerCutter(active=self.mode == "completion")
        for piece in self._target.stream(request, stop=self._stops(stop), **kwargs):
            chunk = self._chunk(piece, cutter)
            if chunk is not None:
                if run_manager:
                    run_manager.on_llm_new_token(str(chunk.message.content), chunk=chunk)
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
        cutter = _EndMarkerCutter(active=self.mode == "completion")
        async for piece in self._target.astream(request, stop=self._stops(stop), **kwargs):
            chunk = self._chunk(piece, cutter)
            if chunk is not None:
                if run_manager:
                    await run_manager.on_llm_new_token(str(chunk.message.content), chunk=chunk)
                yield chunk
            if cutter.done:
                break
        if tail := cutter.flush():
            yield ChatGenerationChunk(message=AIMessageChunk(content=tail))

    def _chunk(self, piece: Any, cutter: _EndMarkerCutter) -> ChatGenerationChunk | None:
        """One streamed piece: chat chunks pass through whole (tool-call chunks and usage included);
        completion text is cut at the end marker."""
        if isinstance(piece, AIMessageChunk) and not cutter.active:
            return ChatGenerationChunk(message=piece)
        text = cutter.feed(_piece_text(piece))
        usage = getattr(piece, "usage_metadata", None)
        if not text and not usage:
            return None
        return ChatGenerationChunk(message=AIMessageChunk(content=text, usage_metadata=usage))


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
