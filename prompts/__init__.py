"""Meta-prompt templates shipped as package data, and safe substitution for them.

Placeholders are written ``{{name}}``. Substitution is a single pass over the
template text: values are inserted verbatim and never re-scanned, so braces or
placeholder-like text inside a query, answer or prompt can never be expanded.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import cache
from importlib import resources

PLACEHOLDER = re.compile(r"\{\{([a-z_][a-z0-9_]*)\}\}")

ASPECT_SELECTION = "aspect_selection"
EVALUATION = "evaluation"
EVALUATION_ANCHORED = "evaluation_anchored"
EVALUATION_RELATIVE = "evaluation_relative"
PROMPT_TRANSITION = "prompt_transition"
TRANSITION_FEEDBACK = "transition_feedback"
BASE_COMPLETION = "base_completion"
BASE_COMPLETION_EXAMPLE = "base_completion_example"
RETRY_FEEDBACK = "retry_feedback"
RETRY_REJECTED = "retry_rejected"
ICL_TRANSITION = "icl_transition"
EVAL_JUDGE = "eval_judge"
EVAL_PAIRWISE = "eval_pairwise"
JUDGE_REPLY = {"first": "judge_reply_first", "none": "judge_reply_none"}  # a judge's rationale: first, or none

COMPLETION_STOP_SEQUENCES: tuple[str, ...] = ("<END>",)


class TemplateError(ValueError):
    """A template and the values given for it do not match."""


@cache
def load_template(name: str) -> str:
    """Return the text of ``prompts/<name>.txt``."""
    path = resources.files(__name__).joinpath(f"{name}.txt")
    if not path.is_file():
        raise TemplateError(f"unknown template {name!r}")
    return path.read_text(encoding="utf-8")


def placeholders(template: str) -> set[str]:
    """Names of the placeholders a template uses."""
    return set(PLACEHOLDER.findall(template))


def render_text(template: str, values: dict[str, str]) -> str:
    """Fill every placeholder of ``template`` in one pass; unknown or missing names are errors."""
    needed = placeholders(template)
    missing = needed - values.keys()
    extra = values.keys() - needed
    if missing or extra:
        raise TemplateError(f"template placeholders mismatch: missing={sorted(missing)} unused={sorted(extra)}")
    return PLACEHOLDER.sub(lambda match: str(values[match.group(1)]), template)


def render(name: str, **values: str) -> str:
    """Render the named template file."""
    return render_text(load_template(name), values)


def template_hash(name: str) -> str:
    """Short content hash of a template: part of cache keys so an edited template never reuses stale results."""
    return hashlib.sha256(load_template(name).encode("utf-8")).hexdigest()[:16]


@cache
def aspect_definitions() -> dict[str, str]:
    """The paper's 14 reward aspects with our one-line definitions, in list order."""
    text = resources.files(__name__).joinpath("aspects.json").read_text(encoding="utf-8")
    return dict(json.loads(text))
