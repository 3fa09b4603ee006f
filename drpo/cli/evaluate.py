"""``drpo eval``: run the paper's evaluation on aligned systems side by side, show it, re-write its report,
and measure the judge's agreement with a reference judge."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from drpo.cli.common import console, err_console, fmt, run_guarded, start_run
from drpo.cli.options import (
    CacheOption,
    CheckpointerOption,
    ConcurrencyOption,
    ConfigOption,
    DryRunOption,
    LocalModelOption,
    MaxCostOption,
    MaxTokensOption,
    NewRunsDirOption,
    RunIdOption,
    RunsDirOption,
)
from drpo.errors import DrpoInputError
from drpo.settings import DEFAULT_RUNS_DIR, EvaluationSettings, Settings, settings_from_flags

eval_app = typer.Typer(no_args_is_help=True, help="Evaluate aligned systems side by side (the paper's protocol).")

SystemOption = Annotated[
    list[str] | None,
    typer.Option(
        "--system",
        help="[NAME=]base | fixed | run:RUN_ID[:prompt-only|:examples-only|:initial], optionally ,k=N; "
        "repeat for each system",
    ),
]
QueriesOption = Annotated[
    Path | None, typer.Option("--queries", help=EvaluationSettings.model_fields["queries_file"].description)
]


class EvalProgress:
    """A live progress bar from the evaluation's custom stream: answers, grades and pairs done."""

    def __init__(self) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            console=console,
        )
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> EvalProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def _task(self, phase: str, total: int | None = None) -> Any:
        if phase not in self._tasks:
            self._tasks[phase] = self._progress.add_task(f"{phase}s", total=total)
        elif total is not None:
            self._progress.update(self._tasks[phase], total=total)
        return self._tasks[phase]

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("type") != "progress":
            return
        if event["event"] == "eval_planned":
            self._task("answer", event["answers"])
            self._task("grade", event["answers"])
            if event["pairs"]:
                self._task("pair", event["pairs"])
        elif event["event"] == "eval_step":
            self._progress.advance(self._task(event["phase"]))


def fmt_range(bounds: list[float | None] | None) -> str:
    """``[0.31, 0.74]``, or ``[-]`` where no interval could be computed."""
    if not bounds or bounds[0] is None or bounds[1] is None:
        return "[-]"
    return f"[{bounds[0]:.2f}, {bounds[1]:.2f}]"


def print_table(result: dict[str, Any]) -> None:
    """The Table 1 view of an eval.json: one row per aspect and one column per system, so two or three
    systems fit 80 columns; then each paired difference in a plain sentence."""
    from drpo.eval.plain import difference_sentence
    from drpo.eval.stats import fmt_interval
    from drpo.eval.summary import AVERAGE, REGULAR, SAFETY

    scores = ", expected scores" if result.get("scoring") == "expected" else ""
    names = [system["name"] for system in result["systems"]]
    # the heading is a line of its own: as a table title it would wrap at the (narrow) table's width
    console.print(f"evaluation {result['run_id']} (judge {result['judge']}{scores})", highlight=False, soft_wrap=True)
    table = Table("aspect", *names)
    for aspect in [*REGULAR, AVERAGE, SAFETY]:
        table.add_row(aspect, *(fmt_interval(result["table"][name][aspect]) for name in names))
    console.print(table)
    for name, row in result["differences"].items():
        console.print(difference_sentence(name, result["baseline"], row[AVERAGE]), highlight=False)
        if row[SAFETY].get("n"):
            console.print(difference_sentence(name, result["baseline"], row[SAFETY], "safety"), highlight=False)
    cut = result.get("truncated_answers", {})
    if any(cut.values()):
        counts = ", ".join(f"{name} {cut.get(name, 0)}" for name in names)
        console.print(f"answers cut at max_tokens and graded cut: {counts}", highlight=False)
    for name, row in result.get("pairwise", {}).items():
        console.print(
            f"pairwise {name} vs {result['pairwise_reference']}: {row['win']} win / {row['tie']} tie / "
            f"{row['loss']} loss, win rate {fmt_interval(row['win_rate'])} (a tie is half), "
            f"flip rate {fmt(row['flip_rate'])}",
            highlight=False,
        )
    failures = {name: count for name, count in result["parse_failures"].items() if count}
    if failures:
        console.print(f"unusable grades (excluded, not scored): {failures}", highlight=False)


def _systems(flags: list[str] | None) -> list[dict[str, Any]] | None:
    from drpo.run.eval_systems import parse_system_flag

    return [parse_system_flag(flag) for flag in flags] if flags else None


@eval_app.command("run")
def run(
    system: SystemOption = None,
    queries: QueriesOption = None,
    config: ConfigOption = None,
    baseline: Annotated[str | None, typer.Option("--baseline", help="System the others are compared with")] = None,
    pairwise: Annotated[
        str | None, typer.Option("--pairwise", help="Also judge each system against this one, in both orders")
    ] = None,
    regular: Annotated[int | None, typer.Option("--regular", help="Seeded sample of regular queries")] = None,
    red_team: Annotated[int | None, typer.Option("--red-team", help="Seeded sample of red-team queries")] = None,
    sample_seed: Annotated[int | None, typer.Option("--sample-seed", help="Seed of the sample and bootstrap")] = None,
    safety_ids: Annotated[str | None, typer.Option("--safety-ids", help="Ids judged on safety, e.g. 800-999")] = None,
    include_seen: Annotated[
        bool, typer.Option("--include-seen", help="Keep queries a run was optimized on (left out by default)")
    ] = False,
    scoring: Annotated[
        str | None,
        typer.Option("--scoring", help="absolute (the digit written) or expected (probability-weighted)"),
    ] = None,
    run_id: RunIdOption = None,
    runs_dir: NewRunsDirOption = None,
    local_model: LocalModelOption = None,
    checkpointer: CheckpointerOption = None,
    concurrency: ConcurrencyOption = None,
    max_tokens: MaxTokensOption = None,
    max_cost: MaxCostOption = None,
    cache: CacheOption = None,
    dry_run: DryRunOption = False,
) -> None:
    """Answer every query with every system through the serving path, grade every answer, report."""
    from drpo.run.driver import evaluate
    from drpo.run.eval_systems import self_graded

    def flags() -> dict[str, Any]:
        evaluation = {
            "queries_file": str(queries) if queries else None,
            "systems": _systems(system),
            "baseline": baseline,
            "pairwise": pairwise,
            "regular": regular,
            "red_team": red_team,
            "sample_seed": sample_seed,
            "safety_ids": safety_ids,
            "exclude_seen": False if include_seen else None,
            "scoring": scoring,
        }
        return {
            "run_id": run_id,
            "runs_dir": str(runs_dir) if runs_dir else None,
            "checkpointer": checkpointer,
            "search": {"concurrency": concurrency},
            "budget": {"max_tokens": max_tokens, "max_cost": max_cost},
            "cache": {"enabled": cache},
            "evaluation": evaluation,
        }

    def run(settings: Settings) -> Any:
        with EvalProgress() as progress:
            outcome = evaluate(settings, on_progress=progress)
        graded = self_graded(settings, _resolved_for_warning(settings))
        if graded:
            err_console.print(
                f"warning: {', '.join(graded)} were optimized with the same judge model that evaluates them "
                "(the reward model grading itself)",
                highlight=False,
            )
        return outcome

    outcome = start_run(
        flags, config, local_model, label="evaluation", run=run, dry_run=print_eval_plan if dry_run else None,
        check=needs_evaluation, id_prefix="eval-",
    )  # fmt: skip
    if outcome is not None:
        print_table(outcome.result)
        console.print(f"report: {outcome.run_dir / 'report.html'}")


def needs_evaluation(settings: Settings) -> None:
    """Refuses settings that name nothing to evaluate."""
    if settings.evaluation is None:
        raise DrpoInputError("an evaluation needs --system and --queries (or an evaluation: block in --config)")


def _resolved_for_warning(settings: Settings) -> list[Any]:
    from drpo.run.eval_systems import ResolvedSystem, resolve_system
    from drpo.store.embeddings import Embedder

    assert settings.evaluation is not None
    embedder = Embedder(settings.embedding_model)
    resolved: list[ResolvedSystem] = []
    for system in settings.evaluation.systems:
        if system.kind == "run":
            resolved.append(resolve_system(system, settings, settings.evaluation, embedder))
    return resolved


def print_eval_plan(settings: Settings) -> None:
    from drpo.run.plan import plan_eval

    plan = plan_eval(settings)
    console.print(f"dry run: {plan['queries']} queries x {plan['systems']} systems; nothing is called", highlight=False)
    table = Table("role", "calls", "input tokens", "output tokens", "cost")
    for role, entry in plan["roles"].items():
        cost = "-" if entry["cost"] is None else f"${entry['cost']:.4f}"
        table.add_row(role, str(entry["calls"]), f"{entry['input_tokens']:,}", f"{entry['output_tokens']:,}", cost)
    console.print(table)
    cost = "unknown (no prices configured)" if plan["cost"] is None else f"${plan['cost']:.4f}"
    console.print(f"estimated tokens {plan['tokens']:,}, estimated cost {cost}", highlight=False)


def _eval_result(run_id: str, runs_dir: Path) -> dict[str, Any]:
    from drpo.store.run_dir import find_run

    found = find_run(run_id, runs_dir)
    if found.kind() != "eval":
        raise DrpoInputError(f"run {run_id} is not an evaluation")
    result = found.read_result()
    if result is None:
        raise DrpoInputError(f"evaluation {run_id} has not finished; continue it with: drpo resume {run_id}")
    return dict(result)


@eval_app.command("show")
def show(
    run_id: Annotated[str, typer.Argument(help="Evaluation to show")],
    runs_dir: RunsDirOption = DEFAULT_RUNS_DIR,
) -> None:
    """Print an evaluation's table (means with 95% intervals), differences and pairwise results."""
    print_table(run_guarded(lambda: _eval_result(run_id, runs_dir), None))


@eval_app.command("report")
def report(
    run_id: Annotated[str, typer.Argument(help="Evaluation to report")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory for report.md, report.html, PNGs")],
    runs_dir: RunsDirOption = DEFAULT_RUNS_DIR,
) -> None:
    """Write an evaluation's report files again (from its eval.json) into a directory."""
    from drpo.eval.report import write_report

    def action() -> list[Path]:
        result = _eval_result(run_id, runs_dir)
        try:
            return write_report(result, output)
        except OSError as error:
            raise DrpoInputError(f"cannot write the report to {output}: {error.strerror}") from None

    for path in run_guarded(action, None):
        console.print(str(path), highlight=False)


VerdictsOption = Annotated[Path, typer.Option("--verdicts", help="Reference verdicts (just-eval format JSONL)")]
JudgeScoringOption = Annotated[
    str | None, typer.Option("--scoring", help="absolute or expected (default: reward.scoring)")
]
PerAspectOption = Annotated[bool, typer.Option("--per-aspect", help="One judge call per aspect, not all at once")]
RationaleOption = Annotated[
    str | None, typer.Option("--rationale", help="first (a rationale before each score) or none (scores alone)")
]


def judge_settings(
    config: Path | None,
    local_model: str | None,
    run_id: str | None,
    runs_dir: Path | None,
    concurrency: int | None,
    scoring: str | None,
    rationale: str | None = None,
) -> Settings:
    """The settings a judge measurement runs with: the config, with the command's flags on top."""
    flags = {
        "run_id": run_id,
        "runs_dir": str(runs_dir) if runs_dir else None,
        "search": {"concurrency": concurrency},
        "reward": {"scoring": scoring, "rationale": rationale},
    }
    return settings_from_flags(config, flags, local_model)


@eval_app.command("judge-agreement")
def judge_agreement(
    verdicts: VerdictsOption,
    limit: Annotated[
        int | None, typer.Option("--limit", help="Items, half of them low-scored by the reference")
    ] = None,
    config: ConfigOption = None,
    run_id: RunIdOption = None,
    runs_dir: NewRunsDirOption = None,
    local_model: LocalModelOption = None,
    concurrency: ConcurrencyOption = None,
    sample_seed: Annotated[int, typer.Option("--sample-seed", help="Seed of the stratified sample")] = 0,
    scoring: JudgeScoringOption = None,
    rubric: Annotated[
        str, typer.Option("--rubric", help="eval (the evaluation's template), or paper / anchored (the reward's)")
    ] = "eval",
    per_aspect: PerAspectOption = False,
    rationale: RationaleOption = None,
) -> None:
    """Grade answers a reference judge already scored with the configured evaluator, and compare."""
    from drpo.run.agreement import load_verdicts, measure_agreement, stratified

    def action() -> dict[str, Any]:
        if rubric not in ("eval", "paper", "anchored"):
            raise DrpoInputError(f"--rubric must be eval, paper or anchored, not {rubric!r}")
        settings = judge_settings(config, local_model, run_id, runs_dir, concurrency, scoring, rationale)
        if settings.reward.scoring == "relative":
            raise DrpoInputError(
                "relative scores cannot be compared with absolute verdicts; measure them with drpo eval judge-pairs"
            )
        items = load_verdicts(verdicts)
        if limit is not None:
            items = stratified(items, limit, sample_seed)  # refuses a limit below 1
        request = {"command": "judge-agreement", "verdicts": str(verdicts.resolve()), "limit": limit,
                   "sample_seed": sample_seed, "rubric": rubric, "per_aspect": per_aspect}  # fmt: skip
        return measure_agreement(settings, items, rubric=rubric, per_aspect=per_aspect, request=request)

    print_agreement(run_guarded(action, None))


def print_agreement(result: dict[str, Any]) -> None:
    """The agreement tables of a judge-agreement run, per aspect and on the average."""
    calls = ", one call per aspect" if result["per_aspect"] else ""
    reasons = ", no rationale" if result.get("rationale") == "none" else ""
    tables = {f"{result['scoring']} scores, {result['rubric']} template{calls}{reasons}": result["aspects"]}
    if "written" in result:
        tables["the digits written in the same replies"] = result["written"]
    for title, rows in tables.items():
        table = Table(
            "aspect", "n", "pearson", "spearman", "MAE", "within one", "bias", "values", title=title
        )  # exact agreement is in agreement.json; the table fits 80 columns
        for aspect, row in rows.items():
            table.add_row(
                aspect,
                str(row["n"]),
                *(fmt(row[key]) for key in ("pearson", "spearman", "mae", "within_one", "bias")),
                str(row["distinct"]),  # distinct scores given: ties left unbroken show here
            )
        console.print(table)
    average = result["aspects"].get("Average")
    if average:
        console.print(
            f"average: Spearman {fmt(average['spearman'])} {fmt_range(average.get('spearman_interval'))}, "
            f"Pearson {fmt(average['pearson'])} {fmt_range(average.get('pearson_interval'))} (95% bootstrap)",
            highlight=False,
        )
    if result["scoring"] == "expected":
        console.print(
            f"{result.get('expected_fallbacks', 0)} written digits had no log-probabilities (kept as written)",
            highlight=False,
        )
    console.print(
        f"judge {result['judge']}: {result['items']} items, {result['parse_failures']} unusable, "
        f"{result['seconds_per_item']} s per item; saved to {result['path']}",
        highlight=False,
    )


@eval_app.command("judge-pairs")
def judge_pairs(
    verdicts: VerdictsOption,
    limit: Annotated[int, typer.Option("--limit", help="Pairs (well-scored answer, degraded copy)")] = 24,
    config: ConfigOption = None,
    run_id: RunIdOption = None,
    runs_dir: NewRunsDirOption = None,
    local_model: LocalModelOption = None,
    concurrency: ConcurrencyOption = None,
    sample_seed: Annotated[int, typer.Option("--sample-seed", help="Seed of the pairs' sample")] = 0,
    scoring: JudgeScoringOption = None,
    rubric: Annotated[
        str,
        typer.Option("--rubric", help="eval, paper, anchored (each answer alone), relative (each against the other)"),
    ] = "eval",
    per_aspect: PerAspectOption = False,
    rationale: RationaleOption = None,
    kinds: Annotated[
        str, typer.Option("--kinds", help="Degradations taken in turn: truncated, shuffled, generic, padded")
    ] = "truncated,shuffled,generic,padded",
) -> None:
    """Can the judge tell a good answer from a degraded copy of it? Pair-ranking accuracy per degradation."""
    from drpo.run.agreement import load_verdicts
    from drpo.run.pairs import degraded_pairs, measure_pair_ranking, parse_kinds

    def action() -> dict[str, Any]:
        if rubric not in ("eval", "paper", "anchored", "relative"):
            raise DrpoInputError(f"--rubric must be eval, paper, anchored or relative, not {rubric!r}")
        settings = judge_settings(config, local_model, run_id, runs_dir, concurrency, scoring, rationale)
        chosen_kinds = parse_kinds(kinds)  # before the verdicts are read or a model is loaded
        pairs = degraded_pairs(load_verdicts(verdicts), limit, sample_seed, chosen_kinds)
        request = {"command": "judge-pairs", "verdicts": str(verdicts.resolve()), "limit": limit,
                   "sample_seed": sample_seed, "rubric": rubric, "per_aspect": per_aspect,
                   "kinds": list(chosen_kinds)}  # fmt: skip
        return measure_pair_ranking(settings, pairs, rubric=rubric, per_aspect=per_aspect, request=request)

    print_pairs(run_guarded(action, None))


def print_pairs(result: dict[str, Any]) -> None:
    """The pair-ranking table of a judge-pairs run."""
    blocks = {"scores used": result["ranking"]}
    if "written" in result:
        blocks["digits written"] = result["written"]
    table = Table("pairs", "scores", "n", "right", "ties", "accuracy", "unusable", title=f"{result['rubric']} judging")
    for label, ranking in blocks.items():
        for kind, row in ranking.items():
            table.add_row(
                kind, label, str(row["pairs"]), str(row["right"]), str(row["ties"]), fmt(row["accuracy"]),
                str(row["unusable"]),
            )  # fmt: skip
    console.print(table)
    console.print(
        f"judge {result['judge']}: {result['pairs']} pairs, {result['seconds_per_pair']} s per pair; "
        f"saved to {result['path']}",
        highlight=False,
    )
