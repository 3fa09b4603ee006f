"""Turn the DRPO reference's published artifacts into a drpo run the aligned runtime can serve.

Input: a model directory with ``output.json`` (``{"level i": {"Prompt", "Evaluation of the prompt"}}``)
and/or ``output.txt`` (the final prompt), plus the reference's ``ICL_examples.json`` (in the
directory, one of its two parents, or given explicitly).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from drpo.errors import DrpoInputError
from drpo.llm.structured import OutputParseError, parse_score
from drpo.scoring import reward_from_scores
from drpo.settings import Settings
from drpo.store.embeddings import Embedder
from drpo.store.files import read_user_text
from drpo.store.icl_store import IclStore, icl_collection_name, open_chroma_client
from drpo.store.run_dir import RunDir, run_dir_for
from drpo.store.seeds import load_icl_file


def _levels(path: Path) -> list[tuple[int, str, dict[str, Any]]]:
    try:
        data = json.loads(read_user_text(path, "reference file"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DrpoInputError(f"{path} is not valid JSON") from None
    if not isinstance(data, dict) or not data:
        raise DrpoInputError(f"{path} must map 'level N' to a prompt and its evaluation")
    levels = []
    for key, value in data.items():
        match = re.fullmatch(r"level\s+(\d+)", str(key))
        if match is None or not isinstance(value, dict) or not isinstance(value.get("Prompt"), str):
            raise DrpoInputError(f"{path}: entry {key!r} is not a 'level N' with a Prompt")
        evaluation = value.get("Evaluation of the prompt") or {}
        levels.append(
            (int(match.group(1)), value["Prompt"].strip(), evaluation if isinstance(evaluation, dict) else {})
        )
    return sorted(levels)


def _scores(evaluation: dict[str, Any]) -> tuple[dict[str, int], dict[str, str]]:
    scores, rationales = {}, {}
    for aspect, entry in evaluation.items():
        if not isinstance(entry, dict):
            continue
        try:
            scores[aspect] = parse_score(entry.get("score"))
        except OutputParseError:
            continue
        rationales[aspect] = str(entry.get("rationale", ""))
    return scores, rationales


def find_icl_file(model_dir: Path, icl_file: Path | None) -> Path:
    if icl_file is not None:
        return icl_file
    for folder in (model_dir, model_dir.parent, model_dir.parent.parent):
        if (folder / "ICL_examples.json").is_file():
            return folder / "ICL_examples.json"
    raise DrpoInputError(f"no ICL_examples.json in {model_dir} or its parents; pass --icl-file")


def import_reference(
    model_dir: Path,
    run_id: str,
    runs_dir: Path,
    *,
    icl_file: Path | None = None,
    embedder: Embedder | None = None,
) -> RunDir:
    """Create a finished run from the reference's artifacts, with its ICL examples in Chroma."""
    if not model_dir.is_dir():
        raise DrpoInputError(f"reference directory not found: {model_dir}")
    output_json, output_txt = model_dir / "output.json", model_dir / "output.txt"
    if not output_json.is_file() and not output_txt.is_file():
        raise DrpoInputError(f"{model_dir} holds neither output.json nor output.txt")
    levels = _levels(output_json) if output_json.is_file() else []
    final = read_user_text(output_txt, "reference prompt file").strip() if output_txt.is_file() else levels[-1][1]
    if not final:
        raise DrpoInputError(f"{output_txt} is empty")
    examples = load_icl_file(find_icl_file(model_dir, icl_file))
    run_dir = run_dir_for(runs_dir, run_id)
    if run_dir.exists():
        raise DrpoInputError(f"run {run_id} already exists in {runs_dir}")
    settings = Settings(runs_dir=runs_dir, run_id=run_id)
    depths = []
    for number, prompt, evaluation in levels or [(1, final, {})]:
        scores, rationales = _scores(evaluation)
        reward = reward_from_scores(scores) if scores else None
        candidate_id = f"level-{number}"
        depths.append(
            {
                "depth": number,
                "queries": [],
                "beam": [candidate_id],
                "candidates": [
                    {
                        "id": candidate_id,
                        "parent": f"level-{number - 1}" if number > 1 else None,
                        "origin": "imported",
                        "note": "",
                        "prompt": prompt,
                        "reward": reward,
                        "path_value": reward,
                        "kept": True,
                        "evaluations": [{"scores": scores, "rationales": rationales, "reward": reward}]
                        if scores
                        else [],
                    }
                ],
            }
        )
    last = depths[-1]["candidates"][0]
    collection = icl_collection_name(run_id)
    result = {
        "run_id": run_id,
        "status": "done",
        "imported_from": str(model_dir),
        "best_prompt": final,
        "best": {
            "candidate_id": last["id"],
            "depth": depths[-1]["depth"],
            "reward": last["reward"],
            "path_value": last["path_value"],
        },
        "stop_reason": "imported from the DRPO reference artifacts",
        "serving": {
            "icl_collection": collection,
            "embedding_model": settings.embedding_model,
            "icl_k": 2,
            "base_mode": "chat",
        },
        "depths_run": len(depths),
        "depths": depths,
        "failures": [],
        "usage": {},
    }
    run_dir.create(settings.snapshot(), kind="prompt")
    store = IclStore(
        open_chroma_client(settings.resolved_store_dir() / "chroma"),
        collection,
        embedder or Embedder(settings.embedding_model),
    )
    store.add(examples, metadata=[{"source_run": run_id, "imported": True} for _ in examples])
    run_dir.write_result(result)  # type: ignore[arg-type]
    run_dir.write_status("done", kind="prompt", imported=True)
    return run_dir
