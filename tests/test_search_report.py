"""``drpo report RUN``: the search report of an optimization run."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pytest

from drpo.eval.search_report import depth_series, figures, search_report_html, word_diff
from drpo.store.embeddings import Embedder
from support.browser import render
from support.cli import drpo, fake_server_config
from support.fake_openai import FakeOpenAIServer
from support.runs import roles, run
from support.scripted import ScriptedChatModel


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return json.loads((_make_run(tmp_path_factory.mktemp("report")) / "result.json").read_text())


def _make_run(work: Path) -> Path:
    with FakeOpenAIServer() as server:
        config = fake_server_config(work / "c.yaml", server.base_url, depth=3)
        done = drpo("optimize", "--config", str(config), "--run-id", "r", "--runs-dir", "runs", cwd=work)
        assert done.returncode == 0, done.stderr
    return work / "runs" / "r"


def test_word_diff_marks_what_was_removed_and_added() -> None:
    diff = word_diff("You are a helpful assistant.", "You are a careful, helpful assistant & tutor.")
    assert diff == "You are a <ins>careful, </ins>helpful <del>assistant.</del><ins>assistant &amp; tutor.</ins>"


def test_the_report_holds_the_runs_depths_prompts_beam_aspects_and_failures(finished: dict) -> None:
    page = search_report_html(finished, {})
    for row in finished["depths"]:
        assert f"<tr><td>{row['depth']}</td><td>{len(row['candidates'])}</td>" in page
        for candidate in row["candidates"]:
            assert html.escape(candidate["id"]) in page
    kept = [c for row in finished["depths"] for c in row["candidates"] if c["kept"]]
    assert page.count("[beam]") == len(kept)
    assert html.escape(finished["best_prompt"]) in page
    moved = [c for row in finished["depths"][1:] for c in row["candidates"] if c["kept"]]
    assert page.count("<pre class='diff'>") == len(moved) and "<ins>" in page
    for record in finished["aspects"].values():
        assert html.escape(", ".join(record["aspects"])) in page
    assert "every judge verdict and every proposal was usable" in page  # no failures in this run
    series = depth_series(finished)
    assert len(series["best reward"]) == finished["depths_run"]


def test_a_relative_runs_report_says_what_its_rewards_mean(finished: dict) -> None:
    assert "Rewards are relative" not in search_report_html(finished, {})
    relative = {**finished, "reward": {**finished["reward"], "scoring": "relative"}}
    assert "3 = as good, 5 = much better" in search_report_html(relative, {})


def test_failures_are_listed_by_role_and_kind(finished: dict) -> None:
    hurt = {**finished, "failures": [{"depth": 2, "role": "evaluator", "kind": "unparseable_evaluation",
                                      "target": "d2-0-0|q", "attempts": 3, "error": "no JSON object"}]}  # fmt: skip
    page = search_report_html(hurt, {})
    assert "<td>evaluator</td><td>unparseable_evaluation</td><td>1</td>" in page and "no JSON object" in page


def test_the_search_report_renders_in_a_headless_browser(tmp_path: Path) -> None:
    run_dir = _make_run(tmp_path)
    done = drpo("report", "r", "--runs-dir", "runs", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    page = run_dir / "report.html"
    assert str(Path("runs") / "r" / "report.html") in done.stdout and page.is_file()
    drawn = render(page)
    assert len(drawn["image_widths"]) == 2 and all(width > 300 for width in drawn["image_widths"])
    assert drawn["tables"] >= 2 and drawn["screenshot_bytes"] > 20_000


def test_report_refuses_what_it_cannot_report(make_settings, embedder: Embedder, tmp_path: Path) -> None:
    settings = make_settings(depth=2, review=True)
    outcome = run(settings, roles(ScriptedChatModel()), embedder, "paused")
    assert outcome.status == "waiting-for-review"
    waiting = drpo("report", "paused", "--runs-dir", str(settings.runs_dir), cwd=tmp_path)
    assert waiting.returncode == 2 and "has not finished" in waiting.stderr
    unknown = drpo("report", "nope", "--runs-dir", str(settings.runs_dir), cwd=tmp_path)
    assert unknown.returncode == 2 and "unknown run" in unknown.stderr


def test_figures_are_png(finished: dict) -> None:
    pictures = figures(finished)
    assert set(pictures) == {"rewards", "tree"} and all(data.startswith(b"\x89PNG") for data in pictures.values())
