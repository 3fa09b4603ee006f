"""The prompt-optimization graph for LangGraph Server (``langgraph dev``, Studio, the SDK, RemoteGraph).

The server brings its own checkpointer, so this graph is compiled without one. Nodes get their
services from a factory keyed by the thread id: settings come from the YAML file named by
``DRPO_SERVER_CONFIG`` (default settings when unset), and each thread is one run directory.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from drpo.graph.context import Services, set_services_factory
from drpo.graph.prompt_graph import build_prompt_graph
from drpo.run.services import build_services, preflight
from drpo.settings import load_settings
from drpo.store.run_dir import run_dir_for

_services: dict[str, Services] = {}
_lock = threading.Lock()


def server_services(thread_id: str) -> Services:
    """One run per server thread, created on first use and kept for the server's lifetime."""
    with _lock:
        if thread_id not in _services:
            config = os.environ.get("DRPO_SERVER_CONFIG")
            settings = load_settings(Path(config) if config else None).model_copy(update={"run_id": thread_id})
            run_dir = run_dir_for(settings.runs_dir, thread_id)
            if not run_dir.exists():
                preflight(settings)
                run_dir.create(settings.snapshot(), kind="prompt", served_by="langgraph-server")
            _services[thread_id] = build_services(settings, run_dir)
        return _services[thread_id]


set_services_factory(server_services)
graph = build_prompt_graph().compile()
graph.name = "drpo"
