"""Text blocks that fill the meta-prompt templates (aspect lists, JSON skeletons, prompt histories)."""

from __future__ import annotations

import json


def aspect_list_text(definitions: dict[str, str]) -> str:
    """``- Name: definition`` lines, one per aspect."""
    return "\n".join(f"- {name}: {text}" for name, text in definitions.items())


def eval_skeleton(aspects: list[str], subject: str = "of the output", rationale: str = "first") -> str:
    """The JSON shape the judge fills: a score per aspect, after a rationale unless ``rationale`` is none."""
    skeleton = {
        aspect: {
            **({"rationale": f"<your thoughts on the {aspect.lower()} {subject}>"} if rationale == "first" else {}),
            "score": f"<your {aspect.lower()} score, 1-5>",
        }
        for aspect in aspects
    }
    return json.dumps(skeleton, indent=2)


def reply_rule(rationale: str) -> str:
    """The judge templates' sentence on rationales (``first`` or ``none``), from its template file."""
    from drpo.prompts import JUDGE_REPLY, load_template

    return load_template(JUDGE_REPLY[rationale]).strip()


def evaluation_text(scores: dict[str, int], rationales: dict[str, str]) -> str:
    """A verdict as the optimizer reads it."""
    return json.dumps(
        {aspect: {"rationale": rationales.get(aspect, ""), "score": score} for aspect, score in scores.items()},
        indent=2,
    )


def former_prompts_text(history: list[str]) -> str:
    """Path prompts, consecutive duplicates (from skipped levels) collapsed."""
    unique: list[str] = []
    for prompt in history:
        if not unique or unique[-1] != prompt:
            unique.append(prompt)
    blocks = [f"---Version {index}---\n{prompt}" for index, prompt in enumerate(unique[:-1], start=1)]
    blocks.append(f"---Current Version---\n{unique[-1]}")
    return "\n\n".join(blocks)
