"""Reading the files a user hands over (prompts, seeds, examples, configs, reference artifacts, query and
verdict files) and the run's own JSON files, the same safe way: every problem is one line naming the file."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from drpo.errors import DrpoInputError


def is_writable_dir(directory: Path) -> bool:
    """False on a read-only mount or a directory this user may not write."""
    return os.access(directory, os.W_OK)


def read_user_text(path: Path, what: str) -> str:
    """The text of a user's file; missing, unreadable or non-UTF-8 files are one clear error."""
    if not path.exists():
        raise DrpoInputError(f"{what} not found: {path}")
    if not path.is_file():
        raise DrpoInputError(f"{what} {path} is not a file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DrpoInputError(f"{what} {path} is not UTF-8 text (bad byte at position {error.start})") from None
    except OSError as error:
        raise DrpoInputError(f"cannot read {what} {path}: {error.strerror}") from None


class DamagedRunFile(DrpoInputError):
    """A run's own file (status, meta, result) that is empty, truncated or not JSON."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"damaged run file {path}: {problem}")
        self.path = path


def read_run_json(path: Path) -> Any:
    """A JSON file the run wrote; a damaged one is a DamagedRunFile naming it (never a traceback)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DamagedRunFile(path, "not UTF-8 text") from None
    except OSError as error:
        raise DamagedRunFile(path, error.strerror or "unreadable") from None
    if not text.strip():
        raise DamagedRunFile(path, "empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DamagedRunFile(path, f"not valid JSON ({error.msg} at line {error.lineno})") from None


def read_run_mapping(path: Path) -> dict[str, Any]:
    """A JSON object the run wrote (meta, status, result): anything else is a DamagedRunFile naming it."""
    data = read_run_json(path)
    if not isinstance(data, dict):
        raise DamagedRunFile(path, f"holds a JSON {type(data).__name__}, not an object")
    return data


def jsonl_records(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    """(line number, value) of every non-blank line of a JSONL file's text; a bad line is one clear error."""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError:
            raise DrpoInputError(f"{path}: line {number} is not valid JSON") from None
