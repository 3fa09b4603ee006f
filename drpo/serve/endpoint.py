"""``drpo serve``: open finished runs and serve them over HTTP with uvicorn.

Everything that can be wrong (an unknown or unfinished run, a missing key variable, a port in use)
is found before the server starts listening, so a server that says it is serving can answer.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from drpo.errors import DrpoInputError
from drpo.serve.batched_retrieval import BatchedRetriever
from drpo.serve.http_app import ServeApp, ServedModel
from drpo.serve.openai_wire import ServeLimits
from drpo.serve.runs import UpstreamChoice, run_settings
from drpo.store.redaction import RedactingFilter, register_secret
from drpo.store.run_dir import find_run

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def token_from_env(name: str | None) -> str | None:
    """The bearer token clients must send, read from the named variable (never from the command line)."""
    if name is None:
        return None
    value = os.environ.get(name, "").strip()
    if not value:
        raise DrpoInputError(f"--api-key-env {name}: the environment variable is not set or empty")
    register_secret(value)
    return value


def listening_socket(host: str, port: int) -> socket.socket:
    """Bound before the server starts, so a port in use is one clear error (port 0 picks a free one)."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except (OSError, OverflowError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise DrpoInputError(f"cannot listen on {host}:{port}: {reason}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


@contextmanager
def served_models(
    runs: list[str], runs_dir: Path, upstream: UpstreamChoice, k: int | None
) -> Iterator[list[ServedModel]]:
    """Each run as an aligned model on its base model (or the one chosen instead); local model servers
    are shared between runs and stopped on exit."""
    from drpo.llm.local_server import LocalServerPool
    from drpo.llm.providers import build_role_model, model_identity
    from drpo.serve.aligned import AlignedChatModel
    from drpo.store.embeddings import Embedder

    if len(set(runs)) != len(runs):
        raise DrpoInputError("a run is named twice: each served run is one model")
    pools: dict[str, LocalServerPool] = {}
    embedders: dict[str, Embedder] = {}
    try:
        served = []
        for name in runs:
            run_dir = find_run(name, runs_dir)
            settings = run_settings(run_dir)
            spec = upstream.applied_to(settings.roles.base)
            pool_key = settings.local.model_dump_json()
            pool = pools.setdefault(pool_key, LocalServerPool(settings.local))
            llm = build_role_model("base", spec, pool)
            embedder = embedders.setdefault(settings.embedding_model, Embedder(settings.embedding_model))
            model = AlignedChatModel.from_run(run_dir.root, llm, runs_dir=runs_dir, k=k, embedder=embedder)
            model = model.model_copy(update={"retriever": BatchedRetriever(model.retriever)})
            model.examples_for("warm-up")  # load the embedding model now, not on the first client's request
            served.append(ServedModel(model, model_identity(spec)))
        yield served
    finally:
        for pool in pools.values():
            pool.close()


def configure_logging() -> None:
    """One line per request on stderr, passed through the redaction filter; uvicorn's own access log is off
    (it would print query strings)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s drpo serve: %(message)s", "%H:%M:%S"))
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("drpo.serve")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False


def serve(app: ServeApp, sock: socket.socket) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn finishes the requests in flight, then returns)."""
    import uvicorn

    config = uvicorn.Config(
        app.asgi(), log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=10
    )
    uvicorn.Server(config).run(sockets=[sock])


def serve_runs(
    runs: list[str],
    runs_dir: Path,
    *,
    host: str,
    port: int,
    upstream: UpstreamChoice,
    limits: ServeLimits,
    token_env: str | None,
    k: int | None,
) -> None:
    token = token_from_env(token_env)
    sock = listening_socket(host, port)
    configure_logging()
    with served_models(runs, runs_dir, upstream, k) as served:
        app = ServeApp(served, limits, token)
        bound_host, bound_port = sock.getsockname()[:2]
        shown = f"[{bound_host}]" if ":" in str(bound_host) else bound_host
        print(f"serving {', '.join(m.run_id for m in served)} at http://{shown}:{bound_port}/v1", flush=True)
        if host not in LOOPBACK_HOSTS and token is None:
            print("warning: listening beyond this machine without a key; set one with --api-key-env NAME", flush=True)
        serve(app, sock)
