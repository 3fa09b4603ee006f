"""Shared fixtures: a scripted model, one embedder per session, settings in a temp runs dir."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from drpo.settings import Settings, settings_from_dict  # noqa: E402
from drpo.store.embeddings import Embedder  # noqa: E402
from support.scripted import ScriptedChatModel  # noqa: E402
from support.servers import create_database, postgres_cluster  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path:
    """The shared data folder (DRPO_SHARED_DATA, else ../shared/data beside the project)."""
    return Path(os.environ.get("DRPO_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.fail(f"shared data not found at {path}; set DRPO_SHARED_DATA")
    return path


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return Embedder("packaged:all-minilm-l6-v2")


@pytest.fixture
def scripted() -> ScriptedChatModel:
    return ScriptedChatModel()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """DSN of a real PostgreSQL server: CI's (DRPO_TEST_POSTGRES_DSN) or a private throwaway cluster."""
    given = os.environ.get("DRPO_TEST_POSTGRES_DSN")
    if given:
        yield given
        return
    with postgres_cluster() as dsn:
        yield dsn


@pytest.fixture
def postgres_dsn(postgres_server: str) -> str:
    """A fresh database per test, so run ids never collide."""
    return create_database(postgres_server, f"drpo_{uuid.uuid4().hex[:12]}")


@pytest.fixture(params=["sqlite", "postgres"])
def checkpointer(request: pytest.FixtureRequest) -> str:
    """Run a test on the embedded SQLite checkpointer and on a real Postgres server."""
    if request.param == "sqlite":
        return "sqlite"
    return str(request.getfixturevalue("postgres_dsn"))


@pytest.fixture
def make_settings(tmp_path: Path):
    def factory(checkpointer: str = "sqlite", **search: Any) -> Settings:
        data: dict[str, Any] = {
            "runs_dir": str(tmp_path / "runs"),
            "store_dir": str(tmp_path / "store"),
            "checkpointer": checkpointer,
            "search": {"depth": 3, "beam_width": 2, "num_actions": 2, **search},
        }
        return settings_from_dict(data)

    return factory


# Tests that start real server processes (PostgreSQL, Chroma, langgraph dev, the fake provider over HTTP,
# CLI subprocesses against it) or run the embedded model: ``make test-fast`` deselects both marks.
SERVER_MODULES = {
    "test_cli",
    "test_cli_review",
    "test_faults",
    "test_langgraph_server",
    "test_shared_stores",
    "test_response_cache",
    "test_packaging",
    "test_eval_cli",
    "test_hostile",
    "test_search_report",
    "test_expected_scores",
    "test_n_support",
}
EMBEDDED_MODULES = {"test_embedded"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        if module in EMBEDDED_MODULES:
            item.add_marker(pytest.mark.embedded)
        uses_postgres = {"postgres_dsn", "postgres_server"} & set(getattr(item, "fixturenames", ()))
        param = getattr(getattr(item, "callspec", None), "params", {}).get("checkpointer")
        browser = "headless_browser" in item.name
        if module in SERVER_MODULES or uses_postgres or param == "postgres" or browser:
            item.add_marker(pytest.mark.server)
