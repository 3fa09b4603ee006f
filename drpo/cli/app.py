"""The ``drpo`` command line: the Typer app and its command groups.

Each group lives in its own module: ``runs`` (optimize, resume, runs, show, export), ``supervise``
(review, status, history, edit, fork), ``icl`` (ICL optimization), ``serve`` (chat, import-reference).
Exit codes are listed in :mod:`drpo.cli.common`.
"""

from __future__ import annotations

import typer

from drpo.cli import runs, serve, supervise
from drpo.cli.evaluate import eval_app
from drpo.cli.icl import icl_app

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Align any LLM by optimizing its system prompt.")
runs.register(app)
app.add_typer(icl_app, name="icl")
app.add_typer(eval_app, name="eval")
serve.register(app)
supervise.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
