"""The search report of an optimization run (``drpo report RUN``): one self-contained HTML page with the
reward and path value by depth, the search tree with the beam marked, each kept prompt's diff against its
parent, the aspects chosen per query and the failures. Pure: a result.json in, HTML out."""

from __future__ import annotations

import difflib
import html
import re
from collections import Counter

from drpo.eval.html_parts import embedded_figures, num, png_bytes
from drpo.store.records import CandidateRow, RunResult


def depth_series(result: RunResult) -> dict[str, list[float | None]]:
    """Per depth: the best and mean candidate reward, and the best kept path value."""
    best, mean, path = [], [], []
    for row in result["depths"]:
        rewards = [c["reward"] for c in row["candidates"] if c["reward"] is not None]
        kept = [c["path_value"] for c in row["candidates"] if c["kept"] and c["path_value"] is not None]
        best.append(max(rewards) if rewards else None)
        mean.append(sum(rewards) / len(rewards) if rewards else None)
        path.append(max(kept) if kept else None)
    return {"best reward": best, "mean reward": mean, "best path value": path}


def figures(result: RunResult) -> dict[str, bytes]:
    """The rewards-by-depth plot and the search-tree plot, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    depths = [row["depth"] for row in result["depths"]]
    out: dict[str, bytes] = {}
    fig, axis = plt.subplots(figsize=(7, 3.6))
    for row in result["depths"]:
        rewards = [c["reward"] for c in row["candidates"] if c["reward"] is not None]
        axis.scatter([row["depth"]] * len(rewards), rewards, color="#bbbbbb", s=14, zorder=1)
    for label, values in depth_series(result).items():
        points = [(d, v) for d, v in zip(depths, values, strict=True) if v is not None]
        axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label, zorder=2)
    axis.set_xlabel("depth")
    axis.set_ylabel("reward (3 = as good as the initial prompt)" if is_relative(result) else "reward (1-5)")
    axis.set_xticks(depths)
    axis.legend(fontsize=8)
    out["rewards"] = png_bytes(fig)

    position: dict[str, tuple[int, int]] = {}
    fig, axis = plt.subplots(figsize=(max(6, 1.2 * len(depths) + 2), 4.2))
    for row in result["depths"]:
        for index, candidate in enumerate(row["candidates"]):
            position[candidate["id"]] = (row["depth"], index)
    for row in result["depths"]:
        for candidate in row["candidates"]:
            x, y = position[candidate["id"]]
            parent = candidate["parent"]
            if parent is not None and parent in position:
                px, py = position[parent]
                axis.plot([px, x], [py, y], color="#999999", linewidth=0.8, zorder=1)
            kept = candidate["kept"]
            axis.scatter([x], [y], s=90 if kept else 40, color="#1f77b4" if kept else "#cccccc", zorder=2)
            axis.annotate(f"{candidate['id']} {num(candidate['reward'])}", (x, y), fontsize=6, xytext=(4, 4),
                          textcoords="offset points")  # fmt: skip
    axis.set_xlabel("depth")
    axis.set_yticks([])
    axis.set_xticks(depths)
    axis.set_title("search tree (blue: kept in the beam)", fontsize=9)
    out["tree"] = png_bytes(fig)
    return out


def word_diff(old: str, new: str) -> str:
    """HTML of ``new`` against ``old``, word by word: <del> for removed, <ins> for added."""
    before, after = re.findall(r"\S+|\s+", old), re.findall(r"\S+|\s+", new)
    parts = []
    for op, a0, a1, b0, b1 in difflib.SequenceMatcher(a=before, b=after, autojunk=False).get_opcodes():
        if op in ("delete", "replace"):
            parts.append(f"<del>{html.escape(''.join(before[a0:a1]))}</del>")
        if op in ("insert", "replace"):
            parts.append(f"<ins>{html.escape(''.join(after[b0:b1]))}</ins>")
        if op == "equal":
            parts.append(html.escape("".join(after[b0:b1])))
    return "".join(parts)


def _tree_html(result: RunResult) -> str:
    """The search tree as nested lists: every candidate under its parent, the beam in bold."""
    rows: dict[str, CandidateRow] = {c["id"]: c for row in result["depths"] for c in row["candidates"]}
    depth_of = {c["id"]: row["depth"] for row in result["depths"] for c in row["candidates"]}
    children: dict[str | None, list[str]] = {}
    for candidate_id, candidate in rows.items():
        parent = candidate["parent"] if candidate["parent"] in rows else None
        children.setdefault(parent, []).append(candidate_id)

    def item(candidate_id: str, seen: frozenset[str]) -> str:
        candidate = rows[candidate_id]
        label = (
            f"{html.escape(candidate_id)} (depth {depth_of[candidate_id]}, {candidate['origin']}): "
            f"reward {num(candidate['reward'])}, path {num(candidate['path_value'])}"
        )
        label = f"<b>{label} [beam]</b>" if candidate["kept"] else label
        below = [child for child in children.get(candidate_id, []) if child not in seen]
        inner = "".join(item(child, seen | {child}) for child in below)
        return f"<li>{label}{f'<ul>{inner}</ul>' if inner else ''}</li>"

    roots = children.get(None, [])
    return f"<ul class='tree'>{''.join(item(root, frozenset({root})) for root in roots)}</ul>"


def _diffs_html(result: RunResult) -> str:
    rows = {c["id"]: c for row in result["depths"] for c in row["candidates"]}
    blocks = []
    for row in result["depths"]:
        for candidate in row["candidates"]:
            parent = rows.get(candidate["parent"] or "")
            if not candidate["kept"] or parent is None:
                continue
            diff = word_diff(parent["prompt"], candidate["prompt"])
            blocks.append(
                f"<h3>{html.escape(candidate['id'])} (depth {row['depth']}) against "
                f"{html.escape(parent['id'])}</h3><pre class='diff'>{diff}</pre>"
            )
    return "".join(blocks) or "<p>No kept prompt has a parent (the search never moved).</p>"


def _aspects_html(result: RunResult) -> str:
    chosen = result.get("aspects", {})
    if not chosen:
        return "<p>No aspects recorded.</p>"
    rows = "".join(
        f"<tr><td>{html.escape(str(record.get('query', query_id)))[:160]}</td>"
        f"<td>{html.escape(', '.join(record.get('aspects', [])))}</td></tr>"
        for query_id, record in chosen.items()
    )
    return f"<table><tr><th>query</th><th>aspects</th></tr>{rows}</table>"


def _failures_html(result: RunResult) -> str:
    failures = result.get("failures", [])
    if not failures:
        return "<p>None: every judge verdict and every proposal was usable.</p>"
    counts = Counter((f.get("role", "?"), f.get("kind", "?")) for f in failures)
    summary = "".join(f"<tr><td>{html.escape(r)}</td><td>{html.escape(k)}</td><td>{n}</td></tr>" for (r, k), n in
                      sorted(counts.items()))  # fmt: skip
    detail = "".join(
        f"<tr><td>{f.get('depth')}</td><td>{html.escape(str(f.get('role')))}</td><td>{html.escape(str(f.get('kind')))}"
        f"</td><td>{html.escape(str(f.get('target')))}</td><td>{html.escape(str(f.get('error', ''))[:200])}</td></tr>"
        for f in failures[:200]
    )
    return (
        f"<table><tr><th>role</th><th>kind</th><th>count</th></tr>{summary}</table>"
        f"<table><tr><th>depth</th><th>role</th><th>kind</th><th>target</th><th>error</th></tr>{detail}</table>"
    )


def _validation_html(result: RunResult) -> str:
    """search.validation's outcome: the initial prompt's and the best prompt's validation reward."""
    validation = result.get("validation")
    if not validation:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(candidate_id)}</td><td>{num(value)}</td></tr>"
        for candidate_id, value in sorted(validation["rewards"].items(), key=lambda item: -(item[1] or 0.0))
    )
    return (
        f"<h2>Validation</h2><p>{html.escape(validation['note'])}: initial prompt {num(validation['initial'])}, "
        f"best {num(validation['best'])} (mean reward over {len(validation['queries'])} validation queries; "
        "the beam and the best prompt are ranked on it).</p>"
        f"<table><tr><th>candidate</th><th>validation reward</th></tr>{rows}</table>"
    )


RELATIVE_NOTE = (
    "<p>Rewards are relative (<code>reward.scoring: relative</code>): each answer graded against the initial "
    "prompt's answer to the same query, 3 = as good, 5 = much better; the initial prompt's own reward (depth 1) "
    "is its absolute 1-5 grade.</p>"
)


def is_relative(result: RunResult) -> bool:
    return result.get("reward", {}).get("scoring") == "relative"


def search_report_html(result: RunResult, pictures: dict[str, bytes]) -> str:
    series = depth_series(result)
    table_rows = "".join(
        f"<tr><td>{row['depth']}</td><td>{len(row['candidates'])}</td><td>{num(series['best reward'][i])}</td>"
        f"<td>{num(series['mean reward'][i])}</td><td>{num(series['best path value'][i])}</td>"
        f"<td>{html.escape(' '.join(row['beam']))}</td></tr>"
        for i, row in enumerate(result["depths"])
    )
    images = embedded_figures(
        pictures,
        (("rewards", "Reward and path value by depth (grey: every candidate)"), ("tree", "The search tree")),
    )
    best = result["best"]
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
        "figure{display:inline-block;margin:1em}img{max-width:700px}pre{white-space:pre-wrap;background:#f6f6f6;"
        "padding:8px}ins{background:#c8f7c5;text-decoration:none}del{background:#f7c5c5}ul.tree{font-size:0.9em}"
    )
    run_id = html.escape(result["run_id"])
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>drpo search {run_id}</title>"
        f"<style>{style}</style></head><body><h1>Search report: run {run_id}</h1>"
        f"<p>{result['depths_run']} depths, stopped: {html.escape(result['stop_reason'])}. Best candidate "
        f"{html.escape(best['candidate_id'])} (depth {best['depth']}): reward {num(best['reward'])}, "
        f"path value {num(best['path_value'])}.</p><h2>Best prompt</h2><pre>{html.escape(result['best_prompt'])}</pre>"
        f"{RELATIVE_NOTE if is_relative(result) else ''}{_validation_html(result)}"
        f"<p>Answers cut at the base model's max_tokens (graded cut): {result.get('truncated_answers', 0)}.</p>"
        f"<h2>By depth</h2><table><tr><th>depth</th><th>candidates</th><th>best reward</th><th>mean reward</th>"
        f"<th>best path value (beam)</th><th>beam</th></tr>{table_rows}</table>{images}"
        f"<h2>Search tree</h2>{_tree_html(result)}<h2>Kept prompts against their parents</h2>{_diffs_html(result)}"
        f"<h2>Aspects chosen per query</h2>{_aspects_html(result)}<h2>Failures</h2>{_failures_html(result)}"
        "</body></html>"
    )
