"""The ``drpo`` command line: the Typer app and its command groups.

Each group lives in its own module: ``runs`` (optimize, resume, runs, show, export), ``supervise``
(review, status, history, edit, fork), ``icl`` (ICL optimization), ``serve`` (chat, import-reference).
Exit codes are listed in :mod:`drpo.cli.common`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys

import typer

from drpo.cli import runs, serve, summary, supervise
from drpo.cli.evaluate import eval_app
from drpo.cli.icl import icl_app

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Align any LLM by optimizing its system prompt.")
runs.register(app)
app.add_typer(icl_app, name="icl")
app.add_typer(eval_app, name="eval")
serve.register(app)
summary.register(app)
supervise.register(app)


def main() -> None:
    """The console entry point. Once the command has finished and everything is written and flushed, the
    process ends without the interpreter's teardown: unloading torch, Chroma and llama.cpp modules takes
    a second or more and writes nothing of ours (``app`` itself, used by tests, exits normally)."""
    try:
        app()
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        if isinstance(stop.code, str):
            print(stop.code, file=sys.stderr)
    exit_now(code)


def exit_now(code: int) -> None:
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more can be written anyway
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
