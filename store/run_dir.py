"""The run directory: config snapshot, status, result, answers, log, checkpoints, journal.

Every file is written atomically (tmp file + rename) so Ctrl-C or a kill never leaves a
half-written artifact behind.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import yaml

from drpo.errors import DrpoInputError
from drpo.store.files import DamagedRunFile, is_writable_dir, read_run_mapping
from drpo.store.records import AnyRunResult, RunStatus, RunStatusName
from drpo.store.redaction import redact

RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def default_store_dir(runs_dir: Path) -> Path:
    """Where the Chroma store and the caches live when no store_dir is set."""
    return runs_dir / ".store"


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write through a new temporary file (created exclusively, so a link planted at its name is never
    followed) renamed over ``path``: a link planted at ``path`` is replaced, not written through, and a
    full disk or Ctrl-C leaves the old file, never a half-written one or a stray temporary."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


@dataclass(frozen=True)
class RunDir:
    """Paths of one run's files. ``status_mirror`` also receives every status (Postgres runs keep one
    in the database, for other machines)."""

    root: Path
    status_mirror: Callable[[dict[str, Any]], None] | None = field(default=None, compare=False)

    @property
    def run_id(self) -> str:
        return self.root.name

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def status(self) -> Path:
        return self.root / "status.json"

    @property
    def result(self) -> Path:
        return self.root / "result.json"

    @property
    def answers(self) -> Path:
        return self.root / "answers.jsonl"

    @property
    def log(self) -> Path:
        return self.root / "run.log"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints.sqlite"

    @property
    def journal(self) -> Path:
        return self.root / "journal.sqlite"

    @property
    def meta(self) -> Path:
        return self.root / "meta.json"

    def exists(self) -> bool:
        return self.config.is_file()

    @property
    def held_out(self) -> Path:
        """The queries the search never saw (``search.held_out``), in just-eval's JSONL shape."""
        return self.root / "held_out.jsonl"

    @property
    def lock(self) -> Path:
        return self.root / "run.lock"

    @property
    def repair_marker(self) -> Path:
        """Present while ``drpo repair`` replays a finished run: the run stays done if the repair is killed,
        and the next repair completes it."""
        return self.root / "repair.pending"

    def create(self, config_snapshot: dict[str, Any], kind: str = "prompt", **meta: Any) -> None:
        """Write (or rewrite) the run's kind and settings snapshot; ``meta`` adds provenance (a fork's source)."""
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.meta.is_file():
            record = {"run_id": self.run_id, "kind": kind, "created_at": time.time(), **meta}
            atomic_write_json(self.meta, record)
        atomic_write_text(self.config, yaml.safe_dump(config_snapshot, sort_keys=False))

    def read_meta(self) -> dict[str, Any]:
        """meta.json: the run's kind, provenance and the content hashes of its input files."""
        return read_run_mapping(self.meta) if self.meta.is_file() else {}

    def kind(self) -> str:
        """``prompt`` or ``icl``; runs made before kinds existed are prompt runs."""
        if not self.meta.is_file():
            return "prompt"
        return str(read_run_mapping(self.meta).get("kind", "prompt"))

    def read_config(self) -> dict[str, Any]:
        data = yaml.safe_load(self.config.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}

    def write_status(self, status: str, **extra: Any) -> None:
        if isinstance(extra.get("error"), str):
            extra["error"] = redact(extra["error"])
        record = {"run_id": self.run_id, "status": status, "updated_at": time.time(), **extra}
        atomic_write_json(self.status, record)
        if self.status_mirror is not None:
            self.status_mirror(record)

    def read_status(self) -> RunStatus:
        if not self.status.is_file():
            return RunStatus(run_id=self.run_id, status="unknown")
        status = checked_status(self.status, read_run_mapping(self.status))
        if self.repair_marker.is_file() and status["status"] != "done" and self.result.is_file():
            return RunStatus(  # a finished run whose repair was stopped is still finished
                run_id=self.run_id, status="done", note=f"a repair was stopped; drpo repair {self.run_id} completes it"
            )
        return status

    def read_result(self) -> AnyRunResult | None:
        if not self.result.is_file():
            return None
        return read_run_mapping(self.result)  # type: ignore[return-value]

    def write_result(self, result: AnyRunResult) -> None:
        """The one writer of ``result.json`` (finalize, the ICL writer, import-reference)."""
        atomic_write_json(self.result, result)


STATUS_NAMES = frozenset(get_args(RunStatusName))


def checked_status(path: Path, record: dict[str, Any]) -> RunStatus:
    """status.json's record, its fields checked: a status of the wrong name or type is a damaged file, so
    one bad run is listed as unreadable instead of breaking every listing."""
    if record.get("status") not in STATUS_NAMES:
        raise DamagedRunFile(
            path, f"its status {str(record.get('status'))[:40]!r} is none of {', '.join(sorted(STATUS_NAMES))}"
        )
    numbers = {"updated_at": (int, float), "depth": (int, type(None)), "best_reward": (int, float, type(None))}
    for name, types in numbers.items():
        if name in record and (isinstance(record[name], bool) or not isinstance(record[name], types)):
            raise DamagedRunFile(path, f"its {name} is not a number")
    for name in ("run_id", "error", "note", "kind", "collection"):
        if name in record and not isinstance(record[name], str):
            raise DamagedRunFile(path, f"its {name} is not text")
    return RunStatus(**record)  # type: ignore[typeddict-item]


KIND_NAMES = {"prompt": "a prompt optimization", "icl": "an ICL optimization", "eval": "an evaluation"}
WHAT_WORKS = {
    "prompt": "show, export, report, summary, chat, history, review, edit and fork",
    "icl": "drpo icl show, drpo export --format json, and drpo optimize --icl-collection RUN",
    "eval": "drpo eval show, drpo eval report and drpo export --format json",
}


def require_kind(run: RunDir, wanted: str, doing: str) -> None:
    """Refuse a command on the wrong kind of run, naming the run's real kind and what works on it."""
    kind = run.kind()
    if kind != wanted:
        raise DrpoInputError(
            f"run {run.run_id} is {KIND_NAMES.get(kind, kind)}, and {doing} needs {KIND_NAMES[wanted]}; "
            f"on it use {WHAT_WORKS.get(kind, 'drpo export --format json')}"
        )


def ensure_runs_dir(runs_dir: Path) -> None:
    """A runs directory a new run can be written in; otherwise one line naming the path and the problem."""
    if runs_dir.exists() and not runs_dir.is_dir():
        raise DrpoInputError(f"runs directory {runs_dir} is a file, not a directory")
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DrpoInputError(f"cannot create runs directory {runs_dir}: {error.strerror}") from None
    if not is_writable_dir(runs_dir):
        raise DrpoInputError(f"runs directory {runs_dir} is not writable")


def run_dir_for(runs_dir: Path, run_id: str) -> RunDir:
    """Where run ``run_id`` lives (or will live) under ``runs_dir``; the id is validated first."""
    if not RUN_ID_PATTERN.match(run_id):
        shown = run_id if len(run_id) <= 80 else f"{run_id[:77]}..."
        raise DrpoInputError(f"invalid run id {shown!r} (letters, digits, '.', '_', '-'; at most 100 characters)")
    return RunDir(runs_dir / run_id)


def _holds_run(path: Path) -> bool:
    try:
        return (path / "config.yaml").is_file()
    except OSError:  # a name too long for the filesystem, say: no run directory
        return False


def find_run(run: str | Path, runs_dir: Path) -> RunDir:
    """An existing run, by id under ``runs_dir`` or by the path of its directory: the one lookup
    every command, supervision and serving use."""
    path = Path(run)
    if _holds_run(path):
        return RunDir(path)
    if not RUN_ID_PATTERN.match(str(run)):
        shown = str(run) if len(str(run)) <= 80 else f"{str(run)[:77]}..."
        raise DrpoInputError(f"no run at {shown!r}: neither a run directory nor a valid run id")
    found = RunDir(runs_dir / str(run))
    if not found.exists():
        raise DrpoInputError(f"unknown run {str(run)!r} in {runs_dir}")
    return found


def list_runs(runs_dir: Path) -> list[RunDir]:
    """Run directories under ``runs_dir``, oldest first."""
    if runs_dir.exists() and not runs_dir.is_dir():
        raise DrpoInputError(f"runs directory {runs_dir} is a file, not a directory")
    if not runs_dir.is_dir():
        return []
    runs = [RunDir(path) for path in runs_dir.iterdir() if path.is_dir() and not path.name.startswith(".")]
    runs = [run for run in runs if run.exists()]
    return sorted(runs, key=lambda run: run.config.stat().st_mtime)
