"""The evaluation's report: report.md (a Table 1 style table with intervals), report.html (self-contained:
figures embedded as PNG data) and the figures as PNG files, all written from eval.json alone."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from drpo.eval.html_parts import embedded_figures, num, png_bytes
from drpo.eval.stats import fmt_interval
from drpo.eval.summary import AVERAGE, REGULAR, SAFETY
from drpo.store.run_dir import atomic_write_bytes, atomic_write_text

FIGURES = ("bars", "radar", "datasets", "lengths")


def markdown_table(summary: dict[str, Any]) -> str:
    """Systems as rows; the five aspects, their average and safety as columns (mean [95% CI])."""
    columns = [*REGULAR, AVERAGE, SAFETY]
    lines = [
        "| system | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for system in summary["systems"]:
        row = summary["table"][system["name"]]
        lines.append(f"| {system['name']} | " + " | ".join(fmt_interval(row[c]) for c in columns) + " |")
    return "\n".join(lines)


def _difference_lines(summary: dict[str, Any]) -> list[str]:
    lines = []
    for name, row in summary["differences"].items():
        average, safety = fmt_interval(row[AVERAGE]), fmt_interval(row[SAFETY])
        lines.append(f"- {name} - {summary['baseline']}: average {average}, safety {safety}")
    return lines


def scoring_note(summary: dict[str, Any]) -> str:
    """How the scores were read off the judge's reply (absent in evaluations from before the setting)."""
    if summary.get("scoring") == "expected":
        return " (probability-weighted: the judge's expected score over 1-5)"
    return ""


def markdown_report(summary: dict[str, Any]) -> str:
    queries = summary["queries"]
    parts = [
        f"# Evaluation {summary['run_id']}",
        "",
        f"Judge: {summary['judge']}. {queries['evaluated']} queries ({queries['regular']} regular, "
        f"{queries['safety']} red-team scored on safety). Scores 1-5{scoring_note(summary)}, "
        "mean [95% bootstrap CI]; N/A and unusable grades are excluded from means and counted below.",
        "",
        markdown_table(summary),
        "",
        f"## Against the baseline ({summary['baseline']}), paired bootstrap",
        *_difference_lines(summary),
        "",
        "## Systems",
        *[
            f"- {s['name']}: {s['label']}; extra prompt tokens per request "
            f"{num(summary['alignment_tokens'].get(s['name']))}; mean answer tokens "
            f"{num(summary['answer_tokens'][s['name']]['mean'])}; N/A "
            f"{sum(summary['not_applicable'][s['name']].values())}; unusable grades "
            f"{summary['parse_failures'][s['name']]}; answers cut at max_tokens "
            f"{summary.get('truncated_answers', {}).get(s['name'], 0)}; left out as seen in optimization "
            f"{summary['queries']['excluded_as_seen'].get(s['name'], 0)}"
            for s in summary["systems"]
        ],
    ]
    if summary["pairwise"]:
        parts += ["", f"## Pairwise against {summary['pairwise_reference']} (both orders; a flip is a tie)", ""]
        parts += [
            "| system | win | tie | loss | win rate (a tie is half) | flip rate | mean tokens | reference tokens |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, row in summary["pairwise"].items():
            parts.append(
                f"| {name} | {row['win']} | {row['tie']} | {row['loss']} | "
                f"{fmt_interval(row.get('win_rate', {}))} | "
                f"{num(row['flip_rate'])} | "
                f"{num(row['mean_tokens'])} | {num(row['reference_mean_tokens'])} |"
            )
    cost = summary.get("cost")
    judge_usage = summary["usage"].get("evaluator", {})
    parts += [
        "",
        f"Judge tokens: {judge_usage.get('input_tokens', 0):,} in, {judge_usage.get('output_tokens', 0):,} out; "
        f"cost {'unknown (no prices)' if cost is None else '$' + format(cost['total'], '.4f')}.",
    ]
    return "\n".join(parts) + "\n"


def _figures(summary: dict[str, Any]) -> dict[str, bytes]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [s["name"] for s in summary["systems"]]
    out: dict[str, bytes] = {}

    def save(fig: Any, key: str) -> None:
        out[key] = png_bytes(fig)

    fig, axis = plt.subplots(figsize=(7, 3.6))
    width = 0.38
    for offset, column in ((-width / 2, AVERAGE), (width / 2, SAFETY)):
        means = [summary["table"][n][column]["mean"] or 0.0 for n in names]
        errors = [
            [
                max(0.0, (summary["table"][n][column]["mean"] or 0) - (summary["table"][n][column]["low"] or 0))
                for n in names
            ],
            [
                max(0.0, (summary["table"][n][column]["high"] or 0) - (summary["table"][n][column]["mean"] or 0))
                for n in names
            ],
        ]
        axis.bar([i + offset for i in range(len(names))], means, width, yerr=errors, capsize=4, label=column)
    axis.set_xticks(range(len(names)), names, rotation=20, ha="right")
    axis.set_ylim(1, 5.2)
    axis.set_ylabel("score (95% CI)")
    axis.legend()
    save(fig, "bars")

    fig = plt.figure(figsize=(5, 5))
    axis = fig.add_subplot(polar=True)
    angles = [2 * math.pi * i / len(REGULAR) for i in range(len(REGULAR))] + [0.0]
    for name in names:
        values = [summary["table"][name][a]["mean"] or 0.0 for a in REGULAR]
        axis.plot(angles, [*values, values[0]], label=name)
        axis.fill(angles, [*values, values[0]], alpha=0.08)
    axis.set_xticks(angles[:-1], list(REGULAR))
    axis.set_ylim(0, 5)
    axis.legend(loc="lower right", bbox_to_anchor=(1.3, -0.1), fontsize=8)
    save(fig, "radar")

    datasets = sorted({d for n in names for d in summary["datasets"][n]})
    fig, axis = plt.subplots(figsize=(max(5, 1.1 * len(datasets) + 2), 0.6 * len(names) + 1.6))
    grid = [[summary["datasets"][n].get(d, {}).get("mean") or float("nan") for d in datasets] for n in names]
    image = axis.imshow(grid, vmin=1, vmax=5, cmap="viridis", aspect="auto")
    axis.set_xticks(range(len(datasets)), datasets, rotation=30, ha="right")
    axis.set_yticks(range(len(names)), names)
    for row, values in enumerate(grid):
        for column, value in enumerate(values):
            if not math.isnan(value):
                axis.text(column, row, f"{value:.2f}", ha="center", va="center", color="white", fontsize=8)
    fig.colorbar(image, ax=axis)
    save(fig, "datasets")

    fig, axis = plt.subplots(figsize=(7, 3.4))
    axis.boxplot([summary["answer_tokens"][n]["values"] or [0] for n in names], tick_labels=names)
    axis.set_ylabel("answer tokens")
    plt.setp(axis.get_xticklabels(), rotation=20, ha="right")
    save(fig, "lengths")
    return out


def html_report(summary: dict[str, Any], figures: dict[str, bytes]) -> str:
    """One self-contained page: the table, the differences, the figures and the pairwise table."""
    columns = [*REGULAR, AVERAGE, SAFETY]
    rows = "".join(
        f"<tr><th>{html.escape(s['name'])}</th>"
        + "".join(f"<td>{html.escape(fmt_interval(summary['table'][s['name']][c]))}</td>" for c in columns)
        + "</tr>"
        for s in summary["systems"]
    )
    table = f"<table><tr><th>system</th>{''.join(f'<th>{c}</th>' for c in columns)}</tr>{rows}</table>"
    images = embedded_figures(
        figures,
        (
            ("bars", "Average and safety per system, with 95% bootstrap intervals"),
            ("radar", "Aspects per system"),
            ("datasets", "Average (safety for red-team sets) per dataset"),
            ("lengths", "Answer length distributions (tokens)"),
        ),
    )
    pairwise = ""
    if summary["pairwise"]:
        body = "".join(
            f"<tr><th>{html.escape(n)}</th><td>{r['win']}</td><td>{r['tie']}</td><td>{r['loss']}</td>"
            f"<td>{fmt_interval(r.get('win_rate', {}))}</td><td>{num(r['flip_rate'])}</td>"
            f"<td>{num(r['mean_tokens'])}</td><td>{num(r['reference_mean_tokens'])}</td></tr>"
            for n, r in summary["pairwise"].items()
        )
        pairwise = (
            f"<h2>Pairwise against {html.escape(str(summary['pairwise_reference']))}</h2><table><tr><th>system</th>"
            "<th>win</th><th>tie</th><th>loss</th><th>win rate (a tie is half)</th><th>flip rate</th>"
            "<th>mean tokens</th><th>reference tokens</th></tr>"
            f"{body}</table>"
        )
    differences = "".join(f"<li>{html.escape(line[2:])}</li>" for line in _difference_lines(summary))
    systems = "".join(
        f"<li><b>{html.escape(s['name'])}</b>: {html.escape(s['label'])}; answers cut at max_tokens "
        f"{summary.get('truncated_answers', {}).get(s['name'], 0)}</li>"
        for s in summary["systems"]
    )
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "th:first-child{text-align:left}figure{display:inline-block;margin:1em}img{max-width:520px}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>drpo evaluation {html.escape(summary['run_id'])}"
        f"</title><style>{style}</style></head><body><h1>Evaluation {html.escape(summary['run_id'])}</h1>"
        f"<p>Judge: {html.escape(summary['judge'])}. {summary['queries']['evaluated']} queries. "
        f"Scores 1-5{html.escape(scoring_note(summary))}, mean [95% bootstrap CI]; "
        "N/A and unusable grades excluded.</p>"
        f"{table}<h2>Against {html.escape(summary['baseline'])}</h2><ul>{differences}</ul>"
        f"<h2>Systems</h2><ul>{systems}</ul>{images}{pairwise}</body></html>"
    )


def write_report(summary: dict[str, Any], directory: Path) -> list[Path]:
    """report.md, report.html and one PNG per figure in ``directory``; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    figures = _figures(summary)
    written = []
    for key, data in figures.items():
        path = directory / f"{key}.png"
        atomic_write_bytes(path, data)
        written.append(path)
    atomic_write_text(directory / "report.md", markdown_report(summary))
    atomic_write_text(directory / "report.html", html_report(summary, figures))
    return [directory / "report.md", directory / "report.html", *written]
