"""Documentation that cannot rot: every shell, Python and YAML block of README.md and docs/ is checked.

A block runs in a sandbox directory unless the comment line before it says otherwise:
``<!-- doc-test: illustrative -->`` (syntax only: ``bash -n``, Python's compiler, and every ``drpo`` command line
parsed by the CLI itself, so a renamed flag or command fails here), or ``<!-- doc-test: file NAME -->`` (a YAML
config written to the sandbox as NAME for the blocks after it, and loaded by the settings loader).
The sandbox holds the repository's ``examples/`` and a finished run named ``my-run`` made on the fake server.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
import typer.core
import yaml
from typer.exceptions import TyperException

from drpo.cli.app import app
from drpo.settings import load_settings
from drpo.settings_reference import END, START, render_reference, undescribed
from support.cli import cli_env, drpo, fake_server_config
from support.fake_openai import FakeOpenAIServer

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
CHECKED_LANGUAGES = {"bash", "sh", "shell", "python", "yaml"}
MARKER = re.compile(r"<!-- doc-test: (?P<kind>illustrative|file|run)\b\s*(?P<arg>[^ ]*).*-->")
FINISHED_RUN = "my-run"


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    language: str
    kind: str  # run | illustrative | file
    file_name: str
    text: str

    @property
    def label(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks_of(page: Path) -> list[Block]:
    """The fenced blocks in a language we check, with the marker on the line before each (blank lines skipped)."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[index])
        if not fence:
            index += 1
            continue
        end = next(i for i in range(index + 1, len(lines)) if lines[i].startswith("```"))
        language = fence.group(1)
        if language in CHECKED_LANGUAGES:
            previous = next((lines[i] for i in range(index - 1, -1, -1) if lines[i].strip()), "")
            marker = MARKER.search(previous)
            kind = marker.group("kind") if marker else "run"
            file_name = marker.group("arg") if marker and kind == "file" else ""
            found.append(Block(page, index + 1, language, kind, file_name, "\n".join(lines[index + 1 : end])))
        index = end + 1
    return found


ALL_BLOCKS = [block for page in PAGES for block in blocks_of(page)]
RUNNABLE = [block for block in ALL_BLOCKS if block.kind == "run"]


def command_lines(script: str) -> list[list[str]]:
    """The ``drpo`` invocations of a shell block (after any ``VAR=value`` prefix): continuation lines joined,
    comments and ``[optional]`` parts (the docs' notation for optional flags) dropped."""
    joined = script.replace("\\\n", " ")
    commands = []
    for line in joined.splitlines():
        line = re.sub(r"\[[^\]]*\]", "", line)
        words = shlex.split(line, comments=True)
        while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):  # VAR=value drpo ...
            words = words[1:]
        if words and words[0] == "drpo":
            commands.append(words[1:])
    return commands


def parse_with_cli(words: list[str]) -> None:
    """Parse a command line with the real CLI (options, types, choices) without running the command."""
    command = typer.main.get_command(app)
    context = command.make_context("drpo", list(words), resilient_parsing=False)
    while isinstance(command, typer.core.TyperGroup):
        # a group keeps its subcommand's words apart (click renamed where: protected_args, then _protected_args)
        words_apart = getattr(context, "_protected_args", None) or getattr(context, "protected_args", [])
        remaining = [*words_apart, *context.args]
        name, command, rest = command.resolve_command(context, remaining)
        assert command is not None, f"unknown command {name}"
        context = command.make_context(name, list(rest), parent=context)


@pytest.mark.parametrize(
    "words", [["optimize", "--no-such-flag"], ["frobnicate"], ["eval", "run", "--regular", "x"], ["resume"]]
)
def test_the_command_line_check_refuses_what_the_cli_refuses(words: list[str]) -> None:
    with pytest.raises(TyperException):
        parse_with_cli(words)


def check_syntax(block: Block) -> None:
    if block.language == "python":
        compile(ast.parse(block.text), block.label, "exec")
    elif block.language == "yaml":
        yaml.safe_load(block.text)
    else:
        done = subprocess.run(["bash", "-n"], input=block.text, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        for words in command_lines(block.text):
            try:
                parse_with_cli(words)
            except TyperException as error:  # typer's usage errors (unknown command or flag, bad value)
                raise AssertionError(f"drpo {shlex.join(words)}: {error}") from error


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=[block.label for block in ALL_BLOCKS])
def test_every_block_parses_and_its_drpo_commands_exist(block: Block) -> None:
    check_syntax(block)


def test_every_block_says_how_it_is_checked() -> None:
    """A block is run unless marked; markers must be spelled right, or a block meant to run would be skipped."""
    for page in PAGES:
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
            if "doc-test" in line:
                assert MARKER.search(line), f"{page.name}:{number}: unknown doc-test marker {line.strip()!r}"
    assert RUNNABLE, "no documentation block runs"
    assert any(block.kind == "file" for block in ALL_BLOCKS)


@pytest.mark.parametrize("block", [b for b in ALL_BLOCKS if b.kind == "file"], ids=lambda b: f"{b.label}:{b.file_name}")
def test_config_blocks_load_as_settings(block: Block, tmp_path: Path) -> None:
    path = tmp_path / block.file_name
    path.write_text(block.text)
    settings = load_settings(path)
    assert settings.roles.base.model  # loaded through the same validation as drpo optimize --config


def test_every_docs_page_is_linked_from_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    pages = [page for page in (ROOT / "docs").glob("*.md")]
    assert pages
    for page in pages:
        assert f"(docs/{page.name})" in readme, f"docs/{page.name} is not linked from README.md"


def test_readme_fits_a_five_minute_read() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    assert max(len(line) for line in text.splitlines()) <= 200


def test_configuration_reference_is_generated_from_the_settings() -> None:
    assert undescribed() == []
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    start, end = page.index(START), page.index(END) + len(END)
    assert page[start:end] == render_reference(), "run: python -m drpo.settings_reference --write docs/configuration.md"
    for field in ("search.validation", "roles.ROLE.timeout", "reward.rationale", "evaluation.scoring"):
        assert f"`{field}`" in page


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runs directory holding a finished run named my-run, made by the CLI on the fake server."""
    work = tmp_path_factory.mktemp("docs-run")
    with FakeOpenAIServer() as server:
        config = fake_server_config(work / "config.yaml", server.base_url, depth=2, beam_width=1, num_actions=2)
        done = drpo("optimize", "--config", str(config), "--run-id", FINISHED_RUN, cwd=work)
    assert done.returncode == 0, done.stderr
    return work / "drpo_runs"


def sandbox(block: Block, runs: Path, root: Path) -> Path:
    """A working directory with examples/, the finished run and the page's config blocks written out."""
    root.mkdir()
    (root / "examples").symlink_to(ROOT / "examples")
    shutil.copytree(runs, root / "drpo_runs")
    for other in blocks_of(block.page):
        if other.kind == "file":
            (root / other.file_name).write_text(other.text)
    return root


@pytest.mark.server
@pytest.mark.parametrize("block", RUNNABLE, ids=[block.label for block in RUNNABLE])
def test_runnable_blocks_run(block: Block, finished_run: Path, tmp_path: Path) -> None:
    work = sandbox(block, finished_run, tmp_path / "sandbox")
    env = {**cli_env(), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env["OPENAI_API_KEY"] = "placeholder-for-dry-runs"  # dry runs never send it
    if block.language == "python":
        command = [sys.executable, "-c", block.text]
    else:
        command = ["bash", "-euo", "pipefail", "-c", block.text]
    done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"{block.label} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
