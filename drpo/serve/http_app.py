"""The ASGI application behind ``drpo serve``: finished runs as models of an OpenAI-compatible API.

Every request goes through :class:`~drpo.serve.aligned.AlignedChatModel`, the same path the
evaluation measures, so what is served is what was optimized. The application never lets an
error escape as a crash or a bare traceback: every failure is an OpenAI-shaped error with its
status, and an upstream failure names the role and model but none of the upstream's text, which
may echo credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from drpo.serve.aligned import AlignedChatModel
from drpo.serve.openai_wire import (
    ChatCompletionRequest,
    ServeLimits,
    WireError,
    bad_request,
    chunk_body,
    completion_body,
    models_body,
    new_completion_id,
    parse_request,
    wire_usage,
)
from drpo.store.redaction import redact

log = logging.getLogger("drpo.serve")
T = TypeVar("T")


@dataclass(frozen=True)
class ServedModel:
    """One finished run as a model: its id is the run id; ``upstream`` names the model that answers."""

    model: AlignedChatModel
    upstream: str

    @property
    def run_id(self) -> str:
        return self.model.run_id


class ClientGone(Exception):
    """The client disconnected before its reply was complete."""


class UpstreamFailed(Exception):
    """The model behind a served run failed mid-request; ``error`` is what the client receives."""

    def __init__(self, error: WireError) -> None:
        super().__init__(error.message)
        self.error = error


def error_response(error: WireError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status)


def upstream_failure(served: ServedModel, error: BaseException) -> WireError:
    """A 502 naming the role and model; the upstream's own message stays out (it may echo a key)."""
    status = getattr(error, "status_code", None)
    detail = type(error).__name__ + (f", HTTP {status}" if status else "")
    log.warning("upstream failure for %s (%s): %s", served.run_id, served.upstream, redact(str(error))[:300])
    return WireError(
        502,
        f"the base model ({served.upstream}) of run {served.run_id} failed: {detail}",
        kind="upstream_error",
        code="upstream_failed",
    )


async def wait_for_disconnect(receive: Receive) -> None:
    """Returns when the client has gone (the request body is already read, so only a disconnect arrives)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def unless_client_leaves(work: Awaitable[T], gone: asyncio.Task[None]) -> T:
    """``work``'s result, or ClientGone once the client disconnects (``work`` is then cancelled, which
    closes its upstream connection)."""
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        return task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    raise ClientGone


async def read_limited_body(request: Request, limit: int) -> bytes:
    too_large = WireError(413, f"the request body is over {limit} bytes", kind="invalid_request_error")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > limit:
            raise too_large
    return bytes(body)


class ServeApp:
    """Routes, authentication and limits over a fixed set of served runs."""

    def __init__(self, served: list[ServedModel], limits: ServeLimits, token: str | None) -> None:
        self.served = {model.run_id: model for model in served}
        self.limits = limits
        self._token = token.encode() if token else None
        self.started = int(time.time())
        self.worker_threads = 64

    def asgi(self) -> Starlette:
        routes = [
            Route("/healthz", self.health, methods=["GET"]),
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/v1/models/{model_id:path}", self.model, methods=["GET"]),
            Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
        ]
        return Starlette(
            routes=routes,
            lifespan=self._lifespan,
            exception_handlers={HTTPException: self._http_error, Exception: self._unexpected},
        )

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        """Threads for the blocking part of each request (retrieval, request building): the default pool
        has a handful, which would queue concurrent requests behind each other before batching."""
        pool = ThreadPoolExecutor(max_workers=self.worker_threads, thread_name_prefix="drpo-serve")
        asyncio.get_running_loop().set_default_executor(pool)
        yield
        pool.shutdown(wait=False, cancel_futures=True)

    async def _http_error(self, request: Request, error: Exception) -> Response:
        status = getattr(error, "status_code", 500)
        message = "not found" if status == 404 else str(getattr(error, "detail", "error"))
        kind = "not_found_error" if status == 404 else "invalid_request_error"
        return error_response(WireError(status, f"{request.method} {request.url.path}: {message}", kind=kind))

    async def _unexpected(self, request: Request, error: Exception) -> Response:
        log.error("unexpected %s on %s %s: %s", type(error).__name__, request.method, request.url.path, error)
        return error_response(WireError(500, f"internal error ({type(error).__name__})", kind="server_error"))

    def _check_token(self, request: Request) -> None:
        if self._token is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), self._token):
            raise WireError(
                401, "missing or wrong API key (send Authorization: Bearer <key>)",
                kind="invalid_request_error", code="invalid_api_key",
            )  # fmt: skip

    def _find(self, model_id: str) -> ServedModel:
        served = self.served.get(model_id)
        if served is None:
            raise WireError(
                404,
                f"the model {model_id!r} is not served here; served: {', '.join(sorted(self.served))}",
                kind="invalid_request_error", param="model", code="model_not_found",
            )  # fmt: skip
        return served

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "models": len(self.served)})

    async def models(self, request: Request) -> Response:
        try:
            self._check_token(request)
        except WireError as error:
            return error_response(error)
        return JSONResponse(models_body(sorted(self.served), self.started))

    async def model(self, request: Request) -> Response:
        try:
            self._check_token(request)
            self._find(request.path_params["model_id"])
        except WireError as error:
            return error_response(error)
        return JSONResponse(models_body([request.path_params["model_id"]], self.started)["data"][0])

    async def chat_completions(self, request: Request) -> Response:
        began = time.perf_counter()
        try:
            self._check_token(request)
            raw = await read_limited_body(request, self.limits.max_body_bytes)
            try:
                payload = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise bad_request(f"the request body is not valid JSON: {error}") from None
            wire = parse_request(payload, self.limits)
            served = self._find(wire.model)
        except WireError as error:
            log.info("POST /v1/chat/completions %d %.3fs", error.status, time.perf_counter() - began)
            return error_response(error)
        gone = asyncio.ensure_future(wait_for_disconnect(request.receive))
        if wire.stream:
            return EventStream(served, wire, gone, began)
        try:
            response = await self._complete(served, wire, gone)
        finally:
            gone.cancel()
        log.info(
            "POST /v1/chat/completions model=%s %d %.3fs", served.run_id, response.status_code,
            time.perf_counter() - began,
        )  # fmt: skip
        return response

    async def _complete(self, served: ServedModel, wire: ChatCompletionRequest, gone: asyncio.Task[None]) -> Response:
        try:
            reply = await unless_client_leaves(
                served.model.ainvoke(wire.langchain_messages(), stop=wire.stops(), **wire.call_kwargs()), gone
            )
        except ClientGone:
            log.info("client of %s disconnected; its upstream call was cancelled", served.run_id)
            return Response(status_code=499)
        except Exception as error:  # the upstream's failure, whatever its kind, is the client's 502
            return error_response(upstream_failure(served, error))
        assert isinstance(reply, AIMessage)
        text = reply.content if isinstance(reply.content, str) else str(reply.content)
        finish = str((reply.response_metadata or {}).get("finish_reason") or "stop")
        body = completion_body(new_completion_id(), served.run_id, text, finish, wire_usage(reply.usage_metadata))
        return JSONResponse(body)


class EventStream(Response):
    """A streamed completion as server-sent events, ending with ``data: [DONE]``.

    The first chunk is awaited before the response starts, so an upstream that fails at once gets a
    502 rather than a stream that carries an error; once streaming, an upstream failure is sent as an
    error event. A client that disconnects cancels the upstream stream at once."""

    media_type = "text/event-stream"

    def __init__(
        self, served: ServedModel, wire: ChatCompletionRequest, gone: asyncio.Task[None], began: float
    ) -> None:
        super().__init__(status_code=200)
        self.served, self.wire, self.gone, self.began = served, wire, gone, began
        self.completion_id = new_completion_id()

    def _pieces(self) -> AsyncIterator[Any]:
        kwargs = self.wire.call_kwargs()
        if isinstance(self.served.model.llm, BaseChatModel):
            kwargs["stream_usage"] = True  # usage on the last chunk, for the client's include_usage
        return self.served.model.astream(self.wire.langchain_messages(), stop=self.wire.stops(), **kwargs)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        pieces = self._pieces()
        status = 200
        try:
            try:
                first = await self._next_piece(pieces)
            except UpstreamFailed as failed:
                status = failed.error.status
                await error_response(failed.error)(scope, receive, send)
                return
            await send({"type": "http.response.start", "status": 200, "headers": self._headers()})
            await self._relay(first, pieces, send)
        except ClientGone:
            status = 499
            log.info("client of %s disconnected; its upstream stream was cancelled", self.served.run_id)
        finally:
            self.gone.cancel()
            await pieces.aclose()  # type: ignore[attr-defined]
            log.info(
                "POST /v1/chat/completions model=%s stream %d %.3fs", self.served.run_id, status,
                time.perf_counter() - self.began,
            )  # fmt: skip

    async def _next_piece(self, pieces: AsyncIterator[Any]) -> Any:
        """The upstream's next piece; None at its end. ClientGone when the client leaves first, UpstreamFailed
        (carrying the client's 502) when the upstream fails."""
        try:
            return await unless_client_leaves(anext(pieces), self.gone)
        except StopAsyncIteration:
            return None
        except ClientGone:
            raise
        except Exception as error:
            raise UpstreamFailed(upstream_failure(self.served, error)) from error

    def _headers(self) -> list[tuple[bytes, bytes]]:
        return [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
        ]

    async def _relay(self, first: Any, pieces: AsyncIterator[Any], send: Send) -> None:
        model, cid = self.served.run_id, self.completion_id
        await self._event(send, chunk_body(cid, model, {"role": "assistant", "content": ""}))
        usage: dict[str, int] | None = None
        finish = "stop"
        piece = first
        while piece is not None:
            if isinstance(piece, AIMessageChunk):
                usage = wire_usage(piece.usage_metadata) or usage
                finish = str((piece.response_metadata or {}).get("finish_reason") or finish)
                text = piece.content if isinstance(piece.content, str) else str(piece.content)
                if text:
                    await self._event(send, chunk_body(cid, model, {"content": text}))
            try:
                piece = await self._next_piece(pieces)
            except UpstreamFailed as failed:
                await self._event(send, failed.error.body())
                break
        else:
            await self._event(send, chunk_body(cid, model, {}, finish_reason=finish))
            if self.wire.stream_options and self.wire.stream_options.include_usage:
                await self._event(send, chunk_body(cid, model, None, usage=usage))
        await self._send_text(send, "data: [DONE]\n\n", more=False)

    async def _event(self, send: Send, body: dict[str, Any]) -> None:
        await self._send_text(send, f"data: {json.dumps(body, ensure_ascii=False)}\n\n", more=True)

    async def _send_text(self, send: Send, text: str, more: bool) -> None:
        try:
            await send({"type": "http.response.body", "body": text.encode(), "more_body": more})
        except OSError:  # ASGI 2.4 servers raise this when the client has gone
            raise ClientGone from None
