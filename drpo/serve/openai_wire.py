"""The OpenAI chat-completions wire format for ``drpo serve``: what a request may hold, and the shapes
of replies, chunks and errors, so clients written for OpenAI (its SDKs, LangChain's ``ChatOpenAI``,
curl scripts) work unchanged against an aligned model.

A request is validated completely before any model is called; a field drpo cannot honour (tools,
several choices, images) is refused by name instead of being ignored, because a client that asked
for it would otherwise get a reply that silently lacks it.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, ConfigDict, Field, ValidationError

# Fields OpenAI accepts that drpo cannot honour: refused with their name rather than ignored.
UNSUPPORTED_FIELDS = {
    "tools": "tools are not supported by drpo serve",
    "tool_choice": "tools are not supported by drpo serve",
    "functions": "functions are not supported by drpo serve",
    "function_call": "functions are not supported by drpo serve",
    "logprobs": "log-probabilities are not returned by drpo serve",
    "top_logprobs": "log-probabilities are not returned by drpo serve",
    "response_format": "response_format is not supported by drpo serve",
    "audio": "audio is not supported by drpo serve",
}


class WireError(Exception):
    """An error a client receives in OpenAI's error shape, with its HTTP status."""

    def __init__(self, status: int, message: str, *, kind: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def bad_request(message: str, param: str | None = None) -> WireError:
    return WireError(400, message, kind="invalid_request_error", param=param)


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: str


class WireMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """The fields of a chat-completions request drpo honours; other OpenAI fields are ignored unless they
    are in :data:`UNSUPPORTED_FIELDS`."""

    model_config = ConfigDict(extra="ignore")
    model: str = Field(min_length=1)
    messages: list[WireMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    n: int = Field(1, ge=1, le=1, description="one choice per request")

    def wanted_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def stops(self) -> list[str] | None:
        if self.stop is None:
            return None
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def call_kwargs(self) -> dict[str, Any]:
        """Sampling parameters the client set, passed to the wrapped model as call options."""
        kwargs: dict[str, Any] = {}
        for name in ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty"):
            value = getattr(self, name)
            if value is not None:
                kwargs[name] = value
        if (limit := self.wanted_max_tokens()) is not None:
            kwargs["max_tokens"] = limit
        return kwargs

    def langchain_messages(self) -> list[BaseMessage]:
        converted: list[BaseMessage] = []
        for message in self.messages:
            if message.role in {"system", "developer"}:
                converted.append(SystemMessage(content=message.text()))
            elif message.role == "user":
                converted.append(HumanMessage(content=message.text()))
            else:
                converted.append(AIMessage(content=message.text()))
        return converted


@dataclass(frozen=True)
class ServeLimits:
    """What one request may ask for; larger requests are refused before any model is called."""

    max_body_bytes: int = 1_000_000
    max_messages: int = 64
    max_tokens: int = 4096
    max_stops: int = 4


def parse_request(payload: Any, limits: ServeLimits) -> ChatCompletionRequest:
    """A validated request, or a 400 naming the first field that is wrong."""
    if not isinstance(payload, dict):
        raise bad_request("the request body must be a JSON object")
    for field, reason in UNSUPPORTED_FIELDS.items():
        if payload.get(field) not in (None, False, [], {}):
            raise bad_request(reason, param=field)
    try:
        request = ChatCompletionRequest.model_validate(payload)
    except ValidationError as error:
        first = error.errors()[0]
        param = ".".join(str(part) for part in first["loc"]) or None
        raise bad_request(f"{param}: {first['msg']}" if param else first["msg"], param=param) from None
    if len(request.messages) > limits.max_messages:
        raise bad_request(f"at most {limits.max_messages} messages are accepted", param="messages")
    if request.messages[-1].role != "user":
        raise bad_request("the last message must come from the user", param=f"messages.{len(request.messages) - 1}")
    wanted = request.wanted_max_tokens()
    if wanted is not None and wanted > limits.max_tokens:
        field = "max_completion_tokens" if request.max_completion_tokens else "max_tokens"
        raise bad_request(f"{field} is {wanted}; this server allows at most {limits.max_tokens}", param=field)
    stops = request.stops() or []
    if len(stops) > limits.max_stops:
        raise bad_request(f"at most {limits.max_stops} stop sequences are accepted", param="stop")
    return request


def new_completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def wire_usage(usage: Any) -> dict[str, int] | None:
    """LangChain's usage metadata in OpenAI's field names (None when the upstream reported none)."""
    if not usage:
        return None
    prompt = int(usage.get("input_tokens", 0))
    completion = int(usage.get("output_tokens", 0))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def completion_body(
    completion_id: str, model: str, text: str, finish_reason: str, usage: dict[str, int] | None
) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage,
    }


def chunk_body(
    completion_id: str,
    model: str,
    delta: dict[str, Any] | None,
    finish_reason: str | None = None,
    usage: dict[str, int] | None = None,
) -> dict[str, Any]:
    """One streamed chunk; ``delta=None`` makes the usage-only chunk that ends a stream (no choices)."""
    choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": None,
        "choices": choices,
        "usage": usage,
    }


def models_body(run_ids: list[str], created: int) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"id": run_id, "object": "model", "created": created, "owned_by": "drpo"} for run_id in run_ids],
    }
