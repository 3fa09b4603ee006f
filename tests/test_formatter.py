from __future__ import annotations

from drpo.serve.formatter import clean_completion, format_base_input
from drpo.store.icl_store import IclExample

EXAMPLES = [IclExample("i1", "Q1 {{query}}", "A1"), IclExample("i2", "Q2", "A2")]


def test_chat_format_is_system_then_alternating_turns() -> None:
    built = format_base_input("Be good.", EXAMPLES, "What now?", "chat")
    assert [(m.type, m.content) for m in built.messages] == [
        ("system", "Be good."),
        ("human", "Q1 {{query}}"),
        ("ai", "A1"),
        ("human", "Q2"),
        ("ai", "A2"),
        ("human", "What now?"),
    ]
    assert built.stop == ()


def test_completion_format_has_consistent_markers_and_stops() -> None:
    built = format_base_input("Be good.", EXAMPLES, "What now?", "completion")
    assert built.text == (
        "# Instructions\n\nBe good.\n\n"
        "# Query:\nQ1 {{query}}\n\n# Answer:\n<START>\nA1\n<END>\n\n"
        "# Query:\nQ2\n\n# Answer:\n<START>\nA2\n<END>\n\n"
        "# Query:\nWhat now?\n\n# Answer:\n<START>\n"
    )
    assert built.stop == ("<END>",)


def test_completion_is_cut_at_the_end_marker() -> None:
    assert clean_completion(" Paris.\n<END>\n# Query: more") == "Paris."
