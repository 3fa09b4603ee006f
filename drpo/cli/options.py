"""Every CLI option, declared once as an ``Annotated`` alias; help comes from the settings' field
descriptions where one exists, so the flag and the YAML key always say the same thing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import BaseModel

from drpo.settings import BudgetSettings, IclSearchSettings, RewardSettings, SearchSettings, Settings


def described(model: type[BaseModel], field: str, fallback: str = "") -> str:
    """The description of a settings field (the single source of a flag's help text)."""
    info = model.model_fields[field]
    return info.description or fallback


# Where runs live and how a run is named.
ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="YAML settings file")]
RunIdOption = Annotated[str | None, typer.Option("--run-id", help="Id for the new run")]
RunsDirOption = Annotated[Path, typer.Option("--runs-dir", help=described(Settings, "runs_dir"))]
NewRunsDirOption = Annotated[Path | None, typer.Option("--runs-dir", help=described(Settings, "runs_dir"))]
CheckpointerOption = Annotated[str | None, typer.Option("--checkpointer", help=described(Settings, "checkpointer"))]
ChromaUrlOption = Annotated[str | None, typer.Option("--chroma-url", help=described(Settings, "chroma_url"))]
LocalModelOption = Annotated[
    str | None, typer.Option("--local-model", help="Packaged model name or GGUF path for every local role")
]

# The search (prompt optimization).
BeamWidthOption = Annotated[int | None, typer.Option("--beam-width", help=described(SearchSettings, "beam_width"))]
NumActionsOption = Annotated[int | None, typer.Option("--num-actions", help=described(SearchSettings, "num_actions"))]
DepthOption = Annotated[int | None, typer.Option("--depth", help=described(SearchSettings, "depth"))]
MaxDepthIncreaseOption = Annotated[
    int | None, typer.Option("--max-depth-increase", help=described(SearchSettings, "max_depth_increase"))
]
IclKOption = Annotated[int | None, typer.Option("--icl-k", help=described(SearchSettings, "icl_k"))]
QueriesPerDepthOption = Annotated[
    int | None, typer.Option("--queries-per-depth", help=described(SearchSettings, "queries_per_depth"))
]
SeedOption = Annotated[int | None, typer.Option("--seed", help=described(SearchSettings, "seed"))]
ConcurrencyOption = Annotated[int | None, typer.Option("--concurrency", help=described(SearchSettings, "concurrency"))]
PathAggregatorOption = Annotated[
    str | None, typer.Option("--path-aggregator", help=described(SearchSettings, "path_aggregator"))
]
StrategyOption = Annotated[str | None, typer.Option("--strategy", help=described(SearchSettings, "strategy"))]
RewardOption = Annotated[str | None, typer.Option("--reward", help=described(RewardSettings, "mode"))]
MaxPromptTokensOption = Annotated[
    int | None, typer.Option("--max-prompt-tokens", help=described(SearchSettings, "max_prompt_tokens"))
]
NoRegressOption = Annotated[str | None, typer.Option("--no-regress", help=described(SearchSettings, "no_regress"))]
ReviewOption = Annotated[bool | None, typer.Option("--review/--no-review", help=described(SearchSettings, "review"))]
SeedFileOption = Annotated[Path | None, typer.Option("--seed-file", help=described(Settings, "seed_file"))]
SeedFormatOption = Annotated[str | None, typer.Option("--seed-format", help="auto, alpaca, lima, text or jsonl")]
IclCollectionOption = Annotated[
    str | None, typer.Option("--icl-collection", help=described(Settings, "icl_collection"))
]

# ICL optimization.
IclBeamWidthOption = Annotated[
    int | None, typer.Option("--beam-width", help=described(IclSearchSettings, "beam_width"))
]
IclNumActionsOption = Annotated[
    int | None, typer.Option("--num-actions", help=described(IclSearchSettings, "num_actions"))
]
IclDepthOption = Annotated[int | None, typer.Option("--depth", help=described(IclSearchSettings, "depth"))]
ExamplesFileOption = Annotated[
    Path | None, typer.Option("--examples", help="ICL examples JSON (query -> answer, or a list); default: ours")
]

# Budgets and cost.
MaxTokensOption = Annotated[int | None, typer.Option("--max-tokens", help=described(BudgetSettings, "max_tokens"))]
MaxCostOption = Annotated[float | None, typer.Option("--max-cost", help=described(BudgetSettings, "max_cost"))]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Print the planned calls and cost; call nothing")]
CacheOption = Annotated[
    bool | None, typer.Option("--cache/--no-cache", help="Reuse responses cached by earlier identical requests")
]

# Review decisions: the same spelling in review, edit and fork.
AcceptOption = Annotated[bool, typer.Option("--accept", help="Keep the beam as it is")]
EditOption = Annotated[
    int | None, typer.Option("--edit", help="Replace beam candidate I with the prompt in --prompt-file")
]
AddOption = Annotated[bool, typer.Option("--add", help="Add the prompt in --prompt-file as a new candidate")]
DropOption = Annotated[int | None, typer.Option("--drop", help="Drop beam candidate I")]
StopOption = Annotated[bool, typer.Option("--stop", help="End the search with the current best")]
PromptFileOption = Annotated[Path | None, typer.Option("--prompt-file", help="File with the new prompt")]
FullOption = Annotated[bool, typer.Option("--full", help="Show full prompts, answers and rationales")]
ForkFromOption = Annotated[
    int, typer.Option("--from-depth", help="Branch from the checkpoint taken after this depth's pruning")
]
