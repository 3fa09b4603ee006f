"""The built wheel has the card's layout mapped into one ``drpo`` namespace and imports on its own."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def test_wheel_contents_and_import(tmp_path: Path) -> None:
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(PROJECT_ROOT),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    wheel = next(tmp_path.glob("drpo-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "drpo/graph/prompt_graph.py",
        "drpo/nodes/generate.py",
        "drpo/store/icl_store.py",
        "drpo/prompts/evaluation.txt",
        "drpo/prompts/aspects.json",
        "drpo/store/data/seed_queries.jsonl",
        "drpo/store/data/base_icl.json",
        "drpo/py.typed",
    ):
        assert expected in names, expected
    assert not any(name.startswith(("graph/", "store/", "nodes/", "tests/")) for name in names)
    unpacked = tmp_path / "unpacked"
    zipfile.ZipFile(wheel).extractall(unpacked)
    probe = (
        "import drpo.graph, drpo.prompts, drpo.store.seeds as s;"
        "from drpo.graph import compile_prompt_graph;"
        "g = compile_prompt_graph();"
        "print(drpo.graph.__file__);"
        "print(len(s.default_seed_queries()), len(drpo.prompts.load_template('evaluation')) > 0,"
        " sorted(g.get_graph().nodes))"
    )
    ran = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={"PYTHONPATH": str(unpacked), "PYTHONSAFEPATH": "1", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    first, second = ran.stdout.splitlines()[:2]
    assert first.startswith(str(unpacked))
    assert second.startswith("92 True")
    for node in (
        "sample_queries",
        "retrieve_icl",
        "select_aspects",
        "generate",
        "evaluate",
        "prune_beam",
        "transition",
        "finalize",
    ):
        assert node in second
