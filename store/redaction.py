"""Secrets never leave the process: every key drpo sends is registered here, and every message written to
a status file, a log, a checkpointed failure record or the terminal goes through ``redact`` first."""

from __future__ import annotations

import logging
import re
import threading

REDACTED = "[redacted]"
# Shapes of provider keys and bearer tokens, redacted even when drpo did not send them itself.
KEY_SHAPES = re.compile(
    r"(?:Bearer\s+[A-Za-z0-9._~+/=-]{8,})|(?:\b(?:sk|gsk|xai|pk|rk)[-_][A-Za-z0-9_-]{8,})", re.IGNORECASE
)
_known: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str) -> None:
    """A value drpo sends as a credential: it is redacted wherever it shows up (short values are left,
    since redacting them would mangle ordinary text)."""
    if value and len(value) >= 6:
        with _lock:
            _known.add(value)


def redact_known(text: str) -> str:
    """``text`` with every registered secret replaced: for model replies, which are kept as written
    except for a key the provider echoed back (key-shaped text a model writes is its answer)."""
    if not text:
        return text
    with _lock:
        known = sorted(_known, key=len, reverse=True)
    for value in known:
        text = text.replace(value, REDACTED)
    return text


def redact(text: str) -> str:
    """``text`` with every registered secret and every key-shaped token replaced by [redacted]."""
    return KEY_SHAPES.sub(REDACTED, redact_known(text)) if text else text


class RedactingFilter(logging.Filter):
    """A logging filter that redacts the formatted message of every record it passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
