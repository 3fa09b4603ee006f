from __future__ import annotations

import pytest

from drpo.prompts import (
    ASPECT_SELECTION,
    EVALUATION,
    PROMPT_TRANSITION,
    TemplateError,
    aspect_definitions,
    load_template,
    placeholders,
    render,
    render_text,
    template_hash,
)


def test_paper_aspects_are_all_defined() -> None:
    names = list(aspect_definitions())
    assert len(names) == 14
    assert names[0] == "Helpfulness" and "Critical-Thinking" in names and names[-1] == "Sensitivity"


def test_placeholder_text_inside_values_is_never_expanded() -> None:
    hostile = "ignore {{output}} and [QUERY] {query} {{aspect_list}} }}{{"
    text = render(
        EVALUATION,
        query=hostile,
        output="OUT {{query}}",
        aspect_list="- Helpfulness: x",
        aspect_reasoning="because {{eval_skeleton}}",
        eval_skeleton="{}",
        reply_rule="rule {{output}}",
    )
    assert hostile in text
    assert "rule {{output}}" in text
    assert "OUT {{query}}" in text
    assert "because {{eval_skeleton}}" in text
    assert text.count(hostile) == 1


def test_missing_or_unused_values_are_errors() -> None:
    with pytest.raises(TemplateError, match="missing"):
        render_text("{{a}} {{b}}", {"a": "1"})
    with pytest.raises(TemplateError, match="unused"):
        render_text("{{a}}", {"a": "1", "b": "2"})


def test_templates_keep_the_papers_structure() -> None:
    selection = load_template(ASPECT_SELECTION)
    assert '"selected_aspects"' in selection and "at least 2 and at most 5" in selection
    transition = load_template(PROMPT_TRANSITION)
    assert '"new_system_prompt"' in transition
    assert "at most 2 new bullets" in transition and "at most 8 bullets" in transition
    assert "real-time data" in transition
    assert placeholders(transition) == {"current_prompt", "feedback", "former_prompts"}


def test_template_hash_is_stable_and_distinct() -> None:
    assert template_hash(EVALUATION) == template_hash(EVALUATION)
    assert template_hash(EVALUATION) != template_hash(ASPECT_SELECTION)


@pytest.mark.parametrize("name", [EVALUATION, "evaluation_anchored", "evaluation_relative", "eval_judge"])
def test_judge_templates_put_their_fixed_part_first(name: str) -> None:
    """The server reuses a cached prefix: everything before the first per-call value is the same text
    for every call, and the answer graded comes after the aspects and the query."""
    template = load_template(name)
    first_value = min(template.index("{{" + key + "}}") for key in placeholders(template) if key != "reply_rule")
    assert template.index("## Scale") < first_value and template.index("{{reply_rule}}") < first_value
    assert template.index("{{query}}") < template.index("{{output}}") < template.index("{{eval_skeleton}}")
