"""Commands that use finished runs: ``chat`` with the aligned model, ``import-reference`` of the paper's runs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from drpo.cli.common import EXIT_FAILED, console, err_console, run_guarded, visible
from drpo.cli.options import LocalModelOption, RunsDirOption
from drpo.settings import DEFAULT_RUNS_DIR
from drpo.store.run_dir import find_run


def import_reference_command(
    directory: Annotated[Path, typer.Argument(help="Reference model directory (output.json / output.txt)")],
    run_id: Annotated[str | None, typer.Option("--run-id", help="Id for the imported run")] = None,
    runs_dir: RunsDirOption = DEFAULT_RUNS_DIR,
    icl_file: Annotated[Path | None, typer.Option("--icl-file", help="The reference's ICL_examples.json")] = None,
) -> None:
    """Import the DRPO paper's optimized prompt and ICL examples as a servable run."""
    from drpo.serve.import_reference import import_reference

    def action() -> Any:
        return import_reference(directory, run_id or f"ref-{directory.name}", runs_dir, icl_file=icl_file)

    run = run_guarded(action, None)
    console.print(f"imported run [bold]{run.run_id}[/bold]; try it with: drpo chat {run.run_id}")


def chat(
    run_id: Annotated[str, typer.Argument(help="Finished run to chat with")],
    runs_dir: RunsDirOption = DEFAULT_RUNS_DIR,
    local_model: LocalModelOption = None,
    k: Annotated[int | None, typer.Option("--k", help="Examples retrieved per message")] = None,
) -> None:
    """Chat in the terminal with the aligned model (streams tokens; /exit or EOF ends)."""
    from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

    from drpo.serve.aligned import AlignedChatModel
    from drpo.serve.runs import run_base_model

    def setup() -> AlignedChatModel:
        run = find_run(run_id, runs_dir)
        llm, holder["pool"] = run_base_model(run.root, runs_dir, local_model)
        return AlignedChatModel.from_run(run.root, llm, runs_dir=runs_dir, k=k)

    holder: dict[str, Any] = {}
    model = run_guarded(setup, None)
    console.print(f"chatting with run [bold]{model.run_id}[/bold]; /exit to leave", highlight=False)
    history: list[BaseMessage] = []
    while True:
        try:
            line = input("you> ")
        except EOFError:
            break
        if line.strip() in {"/exit", "/quit"}:
            break
        if not line.strip():
            continue
        history.append(HumanMessage(content=line))
        sys.stdout.write("assistant> ")
        reply = ""
        try:
            for chunk in model.stream(history):
                text = chunk.content if isinstance(chunk.content, str) else str(chunk.content)
                reply += text
                sys.stdout.write(visible(text))
                sys.stdout.flush()
        except Exception as error:  # a failed reply ends the chat with one clear line
            err_console.print(f"\nerror: {type(error).__name__}: {error}", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_FAILED) from None
        sys.stdout.write("\n")
        history.append(AIMessage(content=reply))


def register(app: typer.Typer) -> None:
    app.command("import-reference")(import_reference_command)
    app.command()(chat)
