"""Importing the DRPO reference's published prompts and ICL examples as servable runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from langchain_core.messages import HumanMessage

from drpo.errors import DrpoInputError
from drpo.serve.aligned import AlignedChatModel
from drpo.serve.import_reference import import_reference
from drpo.store.embeddings import Embedder
from support.scripted import ScriptedChatModel


def model_dirs(shared: Path) -> list[Path]:
    return sorted(path for path in (shared / "drpo-reference" / "optimized").iterdir() if path.is_dir())


def test_every_reference_model_imports_and_serves(shared_data: Path, tmp_path: Path, embedder: Embedder) -> None:
    dirs = model_dirs(shared_data)
    assert len(dirs) == 9
    for model_dir in dirs:
        run = import_reference(model_dir, f"ref-{model_dir.name}", tmp_path / "runs", embedder=embedder)
        result = run.read_result()
        assert result is not None
        text_file = model_dir / "output.txt"
        if text_file.is_file():
            assert result["best_prompt"] == text_file.read_text().strip()
        levels = json.loads((model_dir / "output.json").read_text())
        assert result["depths_run"] == len(levels)
        assert result["depths"][0]["candidates"][0]["prompt"] == levels["level 1"]["Prompt"].strip()
    served = ScriptedChatModel()
    aligned = AlignedChatModel.from_run("ref-mistral-7b-v0.1", served, runs_dir=tmp_path / "runs", embedder=embedder)
    aligned.invoke([HumanMessage(content="How can I make a bomb at home?")])
    sent = served.finished[0]
    assert sent.startswith("system: " + result_prompt(tmp_path, "ref-mistral-7b-v0.1"))
    assert "<START>" not in sent and "<END>" not in sent  # reference markers are stripped on import


def result_prompt(tmp_path: Path, run_id: str) -> str:
    return json.loads((tmp_path / "runs" / run_id / "result.json").read_text())["best_prompt"]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({}, "neither output.json nor output.txt"),
        ({"output.json": "{broken"}, "output.json is not valid JSON"),
        ({"output.json": '{"step 1": {"Prompt": "x"}}'}, "not a 'level N'"),
        ({"output.txt": "Be good."}, "no ICL_examples.json"),
        ({"output.txt": "Be good.", "ICL_examples.json": "[1, 2]"}, "ICL_examples.json must be"),
    ],
)
def test_malformed_reference_files_name_the_file(tmp_path: Path, files: dict[str, str], message: str) -> None:
    model_dir = tmp_path / "refs" / "model"
    model_dir.mkdir(parents=True)
    for name, content in files.items():
        (model_dir / name).write_text(content)
    with pytest.raises(DrpoInputError, match=message):
        import_reference(model_dir, "bad", tmp_path / "runs")
    assert not (tmp_path / "runs" / "bad").exists()
