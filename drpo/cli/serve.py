"""Commands that use finished runs: ``serve`` them over HTTP, ``chat`` with the aligned model, ``import-reference``
of the paper's runs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from drpo.cli.common import EXIT_FAILED, console, err_console, run_guarded, visible
from drpo.cli.options import LocalModelOption, RunsDirOption
from drpo.errors import DrpoInputError
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


def serve(
    runs: Annotated[list[str], typer.Argument(help="Finished runs to serve; each is a model named by its run id")],
    host: Annotated[str, typer.Option("--host", help="Address to listen on (loopback by default)")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on (0: a free one, printed)")] = 8000,
    runs_dir: RunsDirOption = DEFAULT_RUNS_DIR,
    local_model: LocalModelOption = None,
    base_model: Annotated[
        str | None, typer.Option("--base-model", help="Answer with this model instead of the run's base model")
    ] = None,
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="Send the base model's calls to this OpenAI-compatible server")
    ] = None,
    api_key_env: Annotated[
        str | None,
        typer.Option("--api-key-env", help="Environment variable holding the key clients must send as a bearer token"),
    ] = None,
    k: Annotated[
        int | None, typer.Option("--k", min=0, help="Examples retrieved per request (default: the run's)")
    ] = None,
    max_body_bytes: Annotated[int, typer.Option("--max-body-bytes", min=1024, help="Largest request body")] = 1_000_000,
    max_messages: Annotated[int, typer.Option("--max-messages", min=1, help="Most messages in one request")] = 64,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", min=1, help="Largest max_tokens a client may ask for")
    ] = 4096,
) -> None:
    """Serve finished runs as an OpenAI-compatible API (/v1/chat/completions, /v1/models, /healthz)."""
    from drpo.serve.endpoint import serve_runs
    from drpo.serve.openai_wire import ServeLimits
    from drpo.serve.runs import UpstreamChoice

    def action() -> None:
        if not 0 <= port <= 65535:
            raise DrpoInputError(f"--port {port}: use 0-65535")
        serve_runs(
            runs, runs_dir, host=host, port=port,
            upstream=UpstreamChoice(local_model=local_model, base_model=base_model, base_url=base_url),
            limits=ServeLimits(max_body_bytes=max_body_bytes, max_messages=max_messages, max_tokens=max_tokens),
            token_env=api_key_env, k=k,
        )  # fmt: skip

    run_guarded(action, None)


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command("import-reference")(import_reference_command)
    app.command()(chat)
