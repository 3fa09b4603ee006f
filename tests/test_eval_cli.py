"""``drpo eval`` as a real process against the fake OpenAI-compatible server: kill -9 and resume,
show and report, judge agreement, and every bad input as one line with exit code 2."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from test_eval import QUESTIONS, write_queries

from support.cli import drpo, drpo_background, fake_server_config
from support.fake_openai import FakeOpenAIServer


def eval_config(path: Path, base_url: str) -> Path:
    fake_server_config(path, base_url)
    config = yaml.safe_load(path.read_text())
    config["evaluation"] = {"bootstrap": 300, "pairwise": "base"}
    path.write_text(yaml.safe_dump(config))
    return path


def run_args(work: Path, config: Path, run_id: str) -> tuple[str, ...]:
    queries = write_queries(work / "queries.jsonl", QUESTIONS)
    return (
        "eval", "run", "--config", str(config), "--queries", str(queries), "--system", "base", "--system", "fixed",
        "--run-id", run_id, "--runs-dir", "runs",
    )  # fmt: skip


def without_run_id(result: dict) -> dict:
    return {key: value for key, value in result.items() if key != "run_id"}


@pytest.fixture(scope="module")
def reference_eval(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Counter[str], Path]:
    work = tmp_path_factory.mktemp("eval-reference")
    log = work / "requests.jsonl"
    with FakeOpenAIServer(log_path=log) as server:
        done = drpo(*run_args(work, eval_config(work / "c.yaml", server.base_url), "ref"), cwd=work)
    assert done.returncode == 0, done.stderr
    assert "Average" in done.stdout and "report.html" in done.stdout
    result = json.loads((work / "runs" / "ref" / "eval.json").read_text())
    return result, Counter(json.loads(line)["hash"] for line in log.read_text().splitlines()), work


def test_kill_9_mid_evaluation_then_resume_gives_the_same_eval_json(reference_eval, tmp_path: Path) -> None:
    reference, reference_hashes, _ = reference_eval
    log = tmp_path / "requests.jsonl"
    with FakeOpenAIServer(log_path=log, latency=0.05) as server:
        process = drpo_background(
            *run_args(tmp_path, eval_config(tmp_path / "c.yaml", server.base_url), "k"), cwd=tmp_path
        )
        deadline = time.time() + 120
        while time.time() < deadline and not (log.exists() and len(log.read_text().splitlines()) >= 25):
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        before = len(log.read_text().splitlines())
        assert 25 <= before < sum(reference_hashes.values())
        resumed = drpo("resume", "k", "--runs-dir", "runs", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads((tmp_path / "runs" / "k" / "eval.json").read_text())
    assert without_run_id(result) == without_run_id(reference)
    hashes = Counter(json.loads(line)["hash"] for line in log.read_text().splitlines())
    assert sum((hashes - reference_hashes).values()) <= 2  # only calls in flight at the kill are made again
    assert not reference_hashes - hashes


def test_expected_scoring_weighs_the_judges_digits_and_keeps_them(reference_eval, tmp_path: Path) -> None:
    reference, _, _ = reference_eval
    with FakeOpenAIServer() as server:
        config = eval_config(tmp_path / "c.yaml", server.base_url)
        data = yaml.safe_load(config.read_text())
        data["evaluation"]["scoring"] = "expected"
        config.write_text(yaml.safe_dump(data))
        done = drpo(*run_args(tmp_path, config, "x"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "expected scores" in done.stdout
    result = json.loads((tmp_path / "runs" / "x" / "eval.json").read_text())
    assert result["scoring"] == "expected" and reference["scoring"] == "absolute"
    assert all("written" not in item for item in reference["items"])
    ends = {1: 0.8 / 0.7, 5: 4.2 / 0.9}  # the fake server's distribution: d - 0.2 for 2-4, renormalised at the ends
    graded = [item for item in result["items"] if item["ok"]]
    assert graded and len(graded) == len([item for item in reference["items"] if item["ok"]])
    for item in graded:
        assert set(item["written"]) == set(item["scores"])
        for aspect, written in item["written"].items():
            expected = None if written is None else ends.get(written, written - 0.2)
            assert item["scores"][aspect] == pytest.approx(expected, abs=1e-3)
    assert "probability-weighted" in (tmp_path / "runs" / "x" / "report.md").read_text()
    assert result["expected_fallbacks"] == 0  # the fake server gives log-probabilities at every digit


def test_show_and_report_rewrite(reference_eval, tmp_path: Path) -> None:
    reference, _, work = reference_eval
    shown = drpo("eval", "show", "ref", "--runs-dir", "runs", cwd=work)
    assert shown.returncode == 0 and "base" in shown.stdout and "fixed" in shown.stdout
    assert "pairwise fixed vs base" in shown.stdout
    written = drpo("eval", "report", "ref", "--runs-dir", "runs", "-o", str(tmp_path / "out"), cwd=work)
    assert written.returncode == 0, written.stderr
    assert (tmp_path / "out" / "report.html").read_text().count("<img") == 4
    assert (tmp_path / "out" / "report.md").read_text() == (work / "runs" / "ref" / "report.md").read_text()
    assert reference["pairwise"]["fixed"]["n"] == len(QUESTIONS)


def test_judge_agreement_over_http(tmp_path: Path) -> None:
    verdicts = tmp_path / "verdicts.jsonl"
    rows = [
        {
            "id": n,
            "input": f"Question {n}?",
            "output": f"Answer {n}.",
            "parsed": {a: {"score": str(1 + (n + i) % 5), "reason": "r"} for i, a in enumerate(
                ("helpfulness", "clarity", "factuality", "depth", "engagement"))},
        }
        for n in range(12)
    ]  # fmt: skip
    verdicts.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with FakeOpenAIServer() as server:
        config = fake_server_config(tmp_path / "c.yaml", server.base_url)
        done = drpo(
            "eval", "judge-agreement", "--config", str(config), "--verdicts", str(verdicts), "--limit", "8",
            "--run-id", "agree", "--runs-dir", "runs", cwd=tmp_path,
        )  # fmt: skip
        weighed = drpo(
            "eval", "judge-agreement", "--config", str(config), "--verdicts", str(verdicts), "--limit", "8",
            "--run-id", "agree-expected", "--runs-dir", "runs", "--scoring", "expected", cwd=tmp_path,
        )  # fmt: skip
        asked = len(server.requests)
        first = (tmp_path / "runs" / "agree" / "agreement.json").read_text()
        (tmp_path / "runs" / "agree" / "agreement.json").unlink()  # as if killed before the end
        resumed = drpo("resume", "agree", "--runs-dir", "runs", cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stderr
        assert "average: Spearman" in resumed.stdout and len(server.requests) == asked  # all from the journal
        again = json.loads((tmp_path / "runs" / "agree" / "agreement.json").read_text())
        assert {k: v for k, v in again.items() if not k.startswith("seconds")} == {
            k: v for k, v in json.loads(first).items() if not k.startswith("seconds")
        }
    assert done.returncode == 0, done.stderr
    assert weighed.returncode == 0, weighed.stderr
    expected = json.loads((tmp_path / "runs" / "agree-expected" / "agreement.json").read_text())
    assert expected["expected_fallbacks"] == 0 and "0 written digits had no log-probabilities" in weighed.stdout
    assert all(item["judge"] != item["written"] for item in expected["per_item"])  # weighed, not the digits
    report = json.loads((tmp_path / "runs" / "agree" / "agreement.json").read_text())
    assert report["items"] == 8 and report["parse_failures"] == 0
    assert set(report["aspects"]) >= {"Helpfulness", "Average"} and report["aspects"]["Depth"]["n"] == 8
    assert "spearman" in done.stdout
    items = report["per_item"]  # one row per graded item, so configurations can be compared item by item
    assert len(items) == 8 and {item["id"] for item in items} <= {str(n) for n in range(12)}
    chosen = {str(row["id"]): row for row in rows}
    for item in items:
        expected = sum(int(e["score"]) for e in chosen[item["id"]]["parsed"].values()) / 5
        assert item["reference"] == pytest.approx(expected) and 1 <= item["judge"] <= 5
    low, high = report["aspects"]["Average"]["spearman_interval"]
    assert low is None or -1 <= low <= high <= 1
    assert "average: Spearman" in done.stdout and "(95% bootstrap)" in done.stdout


def test_judge_pairs_over_http_for_absolute_and_relative_judging(tmp_path: Path) -> None:
    verdicts = tmp_path / "verdicts.jsonl"
    answer = " ".join(f"Point {n} matters because it explains part of the answer well." for n in range(8))
    rows = [
        {"id": n, "input": f"Question {n}?", "output": f"{answer} ({n})",
         "parsed": {a: {"score": "5", "reason": "r"} for a in ("helpfulness", "clarity", "factuality", "depth",
                                                               "engagement")}}
        for n in range(9)
    ]  # fmt: skip
    verdicts.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with FakeOpenAIServer() as server:
        config = fake_server_config(tmp_path / "c.yaml", server.base_url)
        for rubric in ("eval", "relative"):
            done = drpo(
                "eval", "judge-pairs", "--config", str(config), "--verdicts", str(verdicts), "--limit", "6",
                "--rubric", rubric, "--run-id", rubric, "--runs-dir", "runs", cwd=tmp_path,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            report = json.loads((tmp_path / "runs" / rubric / "pairs.json").read_text())
            assert report["pairs"] == 6 and report["ranking"]["all"]["pairs"] == 6 and len(report["items"]) == 6
            assert set(report["ranking"]) == {"all", "truncated", "shuffled", "generic", "padded"}
            assert "generic" in done.stdout and "accuracy" in done.stdout
        only = drpo(
            "eval", "judge-pairs", "--config", str(config), "--verdicts", str(verdicts), "--limit", "3",
            "--kinds", "padded", "--run-id", "padded", "--runs-dir", "runs", cwd=tmp_path,
        )  # fmt: skip
    assert only.returncode == 0, only.stderr
    report = json.loads((tmp_path / "runs" / "padded" / "pairs.json").read_text())
    assert set(report["ranking"]) == {"all", "padded"} and report["ranking"]["padded"]["pairs"] == 3


def test_bad_evaluation_inputs_exit_2_with_one_line(reference_eval, tmp_path: Path) -> None:
    _, _, work = reference_eval
    good = write_queries(tmp_path / "q.jsonl", QUESTIONS)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": 1, "instruction": "hi"}\n{oops\n')
    verdicts = tmp_path / "v.jsonl"
    verdicts.write_text('{"input": "q"}\n')
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "unfinished").mkdir()
    (tmp_path / "runs" / "unfinished" / "config.yaml").write_text("{}\n")
    cases = [
        (("eval", "run", "--queries", str(good), "--system", "sideways"), "unknown system spec"),
        (("eval", "run", "--queries", str(empty), "--system", "base"), "holds no queries"),
        (("eval", "run", "--queries", str(broken), "--system", "base"), "line 2 is not valid JSON"),
        (("eval", "run", "--queries", str(good), "--system", "run:unfinished"), "has not finished"),
        (("eval", "run", "--queries", str(good), "--system", "base", "--pairwise", "nobody"), "not among the systems"),
        (
            ("eval", "run", "--queries", str(good), "--system", "base", "--scoring", "relative"),
            "evaluation.scoring: Input should be 'absolute' or 'expected'",
        ),
        (("eval", "judge-agreement", "--verdicts", str(verdicts)), "not a verdict"),
        (
            ("eval", "judge-agreement", "--verdicts", str(verdicts), "--scoring", "relative"),
            "with drpo eval judge-pairs",
        ),
        (("eval", "judge-pairs", "--verdicts", str(verdicts), "--rubric", "vibes"), "--rubric must be eval"),
        (("eval", "judge-pairs", "--verdicts", str(good)), "not a verdict"),
        (("eval", "judge-pairs", "--verdicts", str(verdicts), "--kinds", "padded,long"), "--kinds takes"),
        (("eval", "show", "ghost"), "unknown run 'ghost'"),
    ]
    for args, message in cases:
        done = drpo(*args, "--runs-dir", "runs", cwd=tmp_path)
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, (args, done.stderr)
    assert sorted(path.name for path in (tmp_path / "runs").iterdir()) == ["unfinished"]  # nothing half-created
