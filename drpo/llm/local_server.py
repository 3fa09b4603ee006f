"""The embedded OpenAI-compatible llama.cpp server (xllamacpp), started in-process on loopback.

Local roles reach it through the same OpenAI-compatible client as any remote server; one server
is shared by every role that uses the same GGUF file.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

from drpo.errors import DrpoInputError
from drpo.settings import LocalServerSettings

log = logging.getLogger(__name__)


class LocalServer:
    """One running llama.cpp server; keep the object alive as long as it is used."""

    def __init__(self, model_path: Path, settings: LocalServerSettings) -> None:
        try:
            import xllamacpp
        except ImportError:
            raise DrpoInputError(
                "the local provider needs xllamacpp; install it with: pip install 'drpo[local]'"
            ) from None
        params = xllamacpp.CommonParams()
        params.model.path = str(model_path)
        params.n_ctx = settings.n_ctx
        params.n_parallel = settings.parallel
        threads = settings.threads or (os.cpu_count() or 2)
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        if settings.batch:
            params.n_batch = max(settings.batch, params.n_batch)
            params.n_ubatch = settings.batch
        # With prompt caching the tokens of a shared prefix come from the KV cache of an earlier request,
        # computed in other batch shapes, and the logits differ enough to change a greedy reply: the reply
        # would depend on what was served before it, which a resumed (fresh) server has not.
        params.cache_prompt = not settings.reproducible
        params.verbosity = -1
        params.port = 0
        params.hostnames = ["127.0.0.1"]
        self.model_path = model_path
        try:
            self._server: Any = xllamacpp.Server(params)
        except RuntimeError as error:  # llama.cpp could not load the file (or allocate its context)
            raise DrpoInputError(f"cannot load local model {model_path}: {error}") from None
        self.base_url = f"{self._server.listening_address}/v1"
        log.info("embedded llama.cpp server for %s at %s", model_path.name, self.base_url)


class LocalServerPool:
    """Starts at most one embedded server per GGUF file, on first use."""

    def __init__(self, settings: LocalServerSettings) -> None:
        self._settings = settings
        self._servers: dict[Path, LocalServer] = {}
        self._lock = threading.Lock()

    def base_url_for(self, model_path: Path) -> str:
        with self._lock:
            server = self._servers.get(model_path)
            if server is None:
                server = LocalServer(model_path, self._settings)
                self._servers[model_path] = server
            return server.base_url

    def close(self) -> None:
        """Drop the servers; xllamacpp stops a server when its object is collected."""
        with self._lock:
            self._servers.clear()
