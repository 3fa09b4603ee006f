"""Real filesystem faults for tests: a read-only bind mount and a tiny tmpfs (both need CAP_SYS_ADMIN,
which CI's containers have, like this machine; a user without it cannot run these tests at all)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"mounting needs CAP_SYS_ADMIN here: {done.stderr.strip()}")


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


@contextmanager
def read_only_view(source: Path, target: Path) -> Iterator[Path]:
    """``source`` seen read-only at ``target`` (writes there fail with EROFS, even for root)."""
    target.mkdir(parents=True, exist_ok=True)
    _mount("--bind", str(source), str(target))
    try:
        _mount("-o", "remount,ro,bind", str(target))
        yield target
    finally:
        _umount(target)


@contextmanager
def small_tmpfs(target: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` at ``target``; ``grow(target, size)`` frees space without unmounting."""
    target.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target))
    try:
        yield target
    finally:
        _umount(target)


def grow(target: Path, size: str) -> None:
    _mount("-o", f"remount,size={size}", str(target))
