"""A cheap sanity check of a user's .gguf file before a run is created: header, metadata and tensor table
are read (not the weights), so a wrong, truncated or damaged file is one line naming it instead of a
llama.cpp failure after the run directory exists."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

from drpo.errors import DrpoInputError

MAGIC = b"GGUF"
SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # type id -> bytes
STRING, ARRAY = 8, 9
MAX_COUNT = 10_000_000  # more tensors or metadata entries than any model has: the header is garbage


class _Truncated(Exception):
    pass


def _read(handle: BinaryIO, size: int) -> bytes:
    data = handle.read(size)
    if len(data) != size:
        raise _Truncated
    return data


def _u32(handle: BinaryIO) -> int:
    return int(struct.unpack("<I", _read(handle, 4))[0])


def _u64(handle: BinaryIO) -> int:
    return int(struct.unpack("<Q", _read(handle, 8))[0])


def _string(handle: BinaryIO) -> bytes:
    length = _u64(handle)
    if length > 1 << 24:
        raise ValueError("a metadata string is implausibly long")
    return _read(handle, length)


def _skip_value(handle: BinaryIO, kind: int) -> int | None:
    """Skip one metadata value; returns it when it is an unsigned 32-bit integer (the alignment)."""
    if kind == STRING:
        _string(handle)
        return None
    if kind == ARRAY:
        item_kind, count = _u32(handle), _u64(handle)
        if count > MAX_COUNT * 100:
            raise ValueError("a metadata array is implausibly long")
        if item_kind in SCALAR_SIZES:
            handle.seek(SCALAR_SIZES[item_kind] * count, 1)
        else:
            for _ in range(count):
                _skip_value(handle, item_kind)
        return None
    if kind not in SCALAR_SIZES:
        raise ValueError(f"unknown metadata type {kind}")
    data = _read(handle, SCALAR_SIZES[kind])
    return int(struct.unpack("<I", data)[0]) if kind == 4 else None


def _problem(path: Path) -> str | None:
    size = path.stat().st_size
    with path.open("rb") as handle:
        if handle.read(4) != MAGIC:
            return "not a GGUF model file (it does not start with GGUF)"
        version = _u32(handle)
        if version not in (1, 2, 3):
            return f"unsupported GGUF version {version}"
        tensors, entries = _u64(handle), _u64(handle)
        if tensors > MAX_COUNT or entries > MAX_COUNT:
            return "damaged GGUF header"
        alignment = 32
        for _ in range(entries):
            key = _string(handle)
            value = _skip_value(handle, _u32(handle))
            if key == b"general.alignment" and value:
                alignment = value
        last_offset = 0
        for _ in range(tensors):
            _string(handle)
            dims = _u32(handle)
            if dims > 8:
                return "damaged GGUF tensor table"
            handle.seek(8 * dims + 4, 1)
            last_offset = max(last_offset, _u64(handle))
        data_start = -(-handle.tell() // alignment) * alignment
    if data_start + last_offset >= size:
        return "truncated: its weights end before the tensor table says they should"
    return None


def check_gguf(path: Path) -> None:
    """One clear error for a file llama.cpp could not load."""
    try:
        problem = _problem(path)
    except _Truncated:
        problem = "truncated: it ends inside its header"
    except (ValueError, struct.error) as error:
        problem = f"damaged GGUF metadata ({error})"
    except OSError as error:
        problem = f"unreadable ({error.strerror})"
    if problem is not None:
        raise DrpoInputError(f"local model file {path}: {problem}")
