"""Selection on validation queries (search.validation): a prompt that wins its training query but loses on
the validation queries never becomes the best prompt, and the initial prompt is returned when nothing beats it."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

import drpo.graph.prompt_graph as prompt_graph
from drpo.run.plan import plan_run
from drpo.run.services import held_out_seeds, load_seeds, validation_seeds
from drpo.store.embeddings import Embedder
from support.responder import digest, respond, task_of
from support.runs import comparable, resume_run, roles, run
from support.scripted import ScriptedChatModel

INITIAL = "You are a helpful assistant."
# Training and validation scores of each kind of prompt's answers.
SCORES = {"OVERFIT": (4, 1), "MODEST": (3, 4), "PLAIN": (3, 3)}


def kind_of(prompt: str) -> str:
    return next((kind for kind in SCORES if kind in prompt), "PLAIN")


def scripted_search(validation_texts: set[str], proposals: tuple[str, ...]) -> Callable[[str, int], str]:
    """Answers say which kind of prompt wrote them; the judge scores each kind by SCORES, on training
    or validation queries; the optimizer proposes ``proposals`` (one per sample)."""

    def reply(text: str, sample: int) -> str:
        task = task_of(text)
        if task == "answer":
            return f"[{kind_of(text)}] answer {digest('a', text) % 1000}"
        if task == "evaluate":
            query = re.search(r"<query>\n(.*?)\n</query>", text, re.DOTALL).group(1)  # type: ignore[union-attr]
            output = re.search(r"<output>\n(.*?)\n</output>", text, re.DOTALL).group(1)  # type: ignore[union-attr]
            kind = re.search(r"\[(\w+)\]", output).group(1)  # type: ignore[union-attr]
            score = SCORES[kind][1 if query in validation_texts else 0]
            aspects = json.loads(respond(text, sample).split("```json\n", 1)[1].split("\n```", 1)[0])
            return json.dumps({aspect: {"rationale": "scripted", "score": score} for aspect in aspects})
        if task == "transition":
            kind = proposals[sample % len(proposals)]
            tag = digest("t", text, sample) % 1000
            prompt = f"You are a helpful assistant. {kind} style {tag}."
            return json.dumps({"analysis": "a", "thought": "t", "new_system_prompt": prompt})
        return respond(text, sample)

    return reply


def texts_of_validation(settings: Any) -> set[str]:
    return {seed.text for seed in validation_seeds(settings)}


def test_validation_queries_are_disjoint_from_training_and_held_out(make_settings) -> None:
    settings = make_settings(validation=5, held_out=6)
    validation = {seed.id for seed in validation_seeds(settings)}
    training = {seed.id for seed in load_seeds(settings)}
    held_out = {seed.id for seed in held_out_seeds(settings)}
    assert len(validation) == 5 and len(held_out) == 6
    assert not validation & training and not validation & held_out and not training & held_out
    assert validation == {seed.id for seed in validation_seeds(make_settings(validation=5, held_out=6))}
    assert validation != {seed.id for seed in validation_seeds(make_settings(validation=5, held_out=6, seed=7))}


def test_a_training_winner_that_loses_on_validation_is_not_the_best(make_settings, embedder: Embedder) -> None:
    settings = make_settings(depth=2, beam_width=2, num_actions=2, validation=3, max_depth_increase=0)
    responder = scripted_search(texts_of_validation(settings), ("OVERFIT", "MODEST"))
    result = run(settings, roles(ScriptedChatModel(responder=responder)), embedder, "val").result
    last = result["depths"][-1]["candidates"]
    by_kind = {kind_of(candidate["prompt"]): candidate for candidate in last}
    assert by_kind["OVERFIT"]["reward"] > by_kind["MODEST"]["reward"]  # OVERFIT wins its training query
    assert kind_of(result["best_prompt"]) == "MODEST"
    validation = result["validation"]
    assert validation["beat_initial"] and validation["initial"] == 3 and validation["best"] == 4
    assert validation["rewards"][by_kind["OVERFIT"]["id"]] == 1
    assert by_kind["MODEST"]["validation"] == 4 and len(validation["queries"]) == 3
    # without validation the training winner is returned: the difference is the selection, not the script
    plain = run(
        make_settings(depth=2, beam_width=2, num_actions=2, max_depth_increase=0),
        roles(ScriptedChatModel(responder=responder)),
        embedder,
        "no-val",
    ).result
    assert kind_of(plain["best_prompt"]) == "OVERFIT" and "validation" not in plain


def test_the_initial_prompt_is_returned_when_no_proposal_beats_it(make_settings, embedder: Embedder) -> None:
    settings = make_settings(depth=3, beam_width=1, num_actions=2, validation=2, max_depth_increase=0)
    model = ScriptedChatModel(responder=scripted_search(texts_of_validation(settings), ("OVERFIT",)))
    result = run(settings, roles(model), embedder, "keep-initial").result
    assert result["best_prompt"] == INITIAL and result["best"]["candidate_id"] == "d1-0-0"
    assert not result["validation"]["beat_initial"]
    assert result["validation"]["note"].startswith("no proposal beat the initial prompt on 2 validation queries")
    # the initial prompt stays in the beam (so it is expanded again), and every survivor was validated
    assert all("d1-0-0" in depth["beam"] for depth in result["depths"])
    validated = [c for depth in result["depths"] for c in depth["candidates"] if "validation" in c]
    assert {kind_of(c["prompt"]) for c in validated} == {"PLAIN", "OVERFIT"}


@pytest.mark.parametrize(("margin", "modest_returned"), [(0.5, True), (1.0, False)])
def test_a_proposal_must_lead_the_initial_prompt_by_more_than_the_margin(
    make_settings, embedder: Embedder, margin: float, modest_returned: bool
) -> None:
    # MODEST leads the initial prompt by exactly 1.0 on validation (4 against 3)
    settings = make_settings(
        depth=2, beam_width=1, num_actions=1, validation=2, max_depth_increase=0, validation_margin=margin
    )
    model = ScriptedChatModel(responder=scripted_search(texts_of_validation(settings), ("MODEST",)))
    result = run(settings, roles(model), embedder, f"margin-{margin}").result
    validation = result["validation"]
    assert validation["margin"] == margin and validation["initial"] == 3
    assert max(validation["rewards"].values()) == 4  # the proposal was validated either way
    assert validation["beat_initial"] is modest_returned
    assert (kind_of(result["best_prompt"]) == "MODEST") is modest_returned
    if not modest_returned:
        assert result["best_prompt"] == INITIAL
        assert validation["note"].startswith("no proposal beat the initial prompt by more than 1 on 2 validation")


def test_a_margin_without_validation_queries_is_a_clear_error(make_settings) -> None:
    with pytest.raises(Exception, match="search.validation_margin needs search.validation"):
        make_settings(validation_margin=0.1)


def test_identical_prompts_are_not_validated_twice(make_settings, embedder: Embedder) -> None:
    settings = make_settings(depth=3, beam_width=1, num_actions=1, validation=2, max_depth_increase=0)
    model = ScriptedChatModel(responder=scripted_search(texts_of_validation(settings), ("OVERFIT",)))
    result = run(settings, roles(model), embedder, "twins").result
    validation_texts = texts_of_validation(settings)
    answers = [text for text in model.finished if task_of(text) == "answer"]
    asked = Counter(text for text in answers if any(query in text for query in validation_texts))
    assert max(asked.values()) == 1  # no validation request asked twice
    assert result["validation"]["rewards"]["d1-0-0"] == 3


def test_the_dry_run_counts_validation_calls(make_settings) -> None:
    plain = plan_run(make_settings(depth=3, beam_width=2, num_actions=2, max_depth_increase=0))
    validated = plan_run(make_settings(depth=3, beam_width=2, num_actions=2, max_depth_increase=0, validation=3))
    # the initial prompt at depth 1, then at most W survivors per later depth, on 3 queries each
    extra = 3 * (1 + 2 + 2)
    for role, more in (("base", extra), ("evaluator", extra), ("aspect_selector", 3), ("optimizer", 0)):
        assert validated["roles"][role]["calls"] == plain["roles"][role]["calls"] + more, role


def raise_once(node: Callable[..., Any]) -> Callable[..., Any]:
    fired = {"done": False}

    def wrapper(state: Any, runtime: Any) -> Any:
        if state["depth"] == 2 and not fired["done"]:
            fired["done"] = True
            raise RuntimeError("injected in validation")
        return node(state, runtime)

    return wrapper


@pytest.mark.parametrize("node_name", ["generate", "evaluate", "select_on_validation"])
def test_a_crash_during_validation_resumes_to_the_unbroken_result(
    make_settings, embedder: Embedder, monkeypatch: pytest.MonkeyPatch, node_name: str
) -> None:
    search = {"depth": 3, "beam_width": 2, "num_actions": 2, "validation": 3, "max_depth_increase": 0}
    settings = make_settings(**search)
    responder = scripted_search(texts_of_validation(settings), ("OVERFIT", "MODEST"))
    reference_model = ScriptedChatModel(responder=responder)
    reference = run(
        settings.model_copy(update={"store_dir": settings.runs_dir / "ref-store"}),
        roles(reference_model),
        embedder,
        "reference",
    ).result
    # only the validation node of that name fails: the builder registers the same function twice
    original = prompt_graph.build_prompt_graph

    def build() -> Any:
        builder = original()
        spec = builder.nodes[f"validation_{node_name}" if node_name != "select_on_validation" else node_name]
        spec.runnable.func = raise_once(spec.runnable.func)  # type: ignore[attr-defined]
        return builder

    monkeypatch.setattr(prompt_graph, "build_prompt_graph", build)
    first = ScriptedChatModel(responder=responder)
    with pytest.raises(RuntimeError, match="injected in validation"):
        run(settings, roles(first), embedder, "broken")
    monkeypatch.setattr(prompt_graph, "build_prompt_graph", original)
    second = ScriptedChatModel(responder=responder)
    resumed = resume_run(settings, roles(second), embedder, "broken").result
    assert comparable(resumed) == comparable(reference)
    assert Counter(first.finished) + Counter(second.finished) == Counter(reference_model.finished)
