"""Selection on validation queries (``search.validation``, a departure from the paper).

After a depth's pruning on its training reward, the survivors are answered and judged on a fixed set of
validation queries; the beam is then the best W on that validation reward among the survivors and the
previous beam, and the returned prompt is the beam's first. Training rewards come from one query per
depth that the optimizer saw feedback on, so a prompt written about that query can win them; the
validation queries are the same for every candidate and never shown to the optimizer, so their reward
compares candidates of different depths directly, and the initial prompt (validated at depth 1 and
kept in the pool until something beats it) is returned when no proposal does. With
``search.validation_margin`` a proposal must lead the initial prompt by more than the margin, because on a
few validation queries a small lead is noise and a weak judge's noise is not an improvement.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from drpo.graph.context import DrpoContext, services_of
from drpo.graph.progress import BeamValue, ValidatedEvent, emit
from drpo.graph.state import ROOT_ID, PromptOptState, ValidationEntry
from drpo.judge.verdict import AS_GOOD_AS_REFERENCE
from drpo.nodes.prune_beam import reward_of
from drpo.nodes.stalls import check_validation
from drpo.scoring import candidate_reward, verdict_key
from drpo.strategy import strategy_for


def validating(state: PromptOptState) -> bool:
    return bool(state.get("validation_queries"))


def previous_beam(state: PromptOptState) -> list[str]:
    """The beam chosen on validation at the depth before this one (empty at depth 1)."""
    earlier = state.get("validated", {}).get(str(state["depth"] - 1), [])
    return [entry["id"] for entry in earlier if entry["kept"]]


def validation_pool(state: PromptOptState) -> list[str]:
    """Candidates ranked on validation at this depth: the depth's survivors of training pruning, then the
    previous beam (so a parent beaten on training but not on validation keeps its place)."""
    pool = list(state.get("beam", []))
    return pool + [candidate_id for candidate_id in previous_beam(state) if candidate_id not in pool]


def needs_validation(state: PromptOptState, candidate_id: str) -> list[str]:
    """The validation queries this candidate has no usable verdict on yet."""
    evaluations = state.get("evaluations", {})
    return [
        query_id
        for query_id in state.get("validation_queries", [])
        if (record := evaluations.get(verdict_key(candidate_id, query_id))) is None or record["reward"] is None
    ]


def validation_value(state: PromptOptState, candidate_id: str) -> float | None:
    """Mean reward over the validation queries. Under relative scoring every other answer is graded
    against the initial prompt's, so the initial prompt stands at the scale's "as good" point."""
    if state.get("scoring") == "relative" and candidate_id == ROOT_ID:
        return AS_GOOD_AS_REFERENCE
    return candidate_reward(candidate_id, state.get("validation_queries", []), state.get("evaluations", {}))


def reuse_identical_prompts(state: PromptOptState) -> dict[str, Any]:
    """Verdicts of a candidate whose prompt is word for word one already validated (a carried prompt, a
    reviewer's copy) are copied instead of asked again: same prompt, same queries, same examples."""
    evaluations = state.get("evaluations", {})
    copies = {}
    for candidate_id in validation_pool(state):
        prompt = state["candidates"][candidate_id]["prompt"]
        twin = next(
            (
                other
                for other, record in state["candidates"].items()
                if other != candidate_id and record["prompt"] == prompt and not needs_validation(state, other)
            ),
            None,
        )
        if twin is None:
            continue
        for query_id in needs_validation(state, candidate_id):
            source = evaluations[verdict_key(twin, query_id)]
            copies[verdict_key(candidate_id, query_id)] = {**source, "candidate": candidate_id}
    return {"evaluations": copies} if copies else {}


def validate(state: PromptOptState, runtime: Runtime[DrpoContext]) -> dict[str, Any]:
    """Join point before validation's answers: copies the verdicts of identical prompts."""
    return reuse_identical_prompts(state)


def rank_on_validation(state: PromptOptState, pool: list[str], margin: float) -> list[ValidationEntry]:
    """Best first: higher validation reward, the initial prompt's counted ``margin`` higher (so a proposal
    replaces it only by leading by more than the margin, and the order stays transitive); ties go to the
    earlier candidate (older depth, then pool order), so a proposal must beat the incumbent, not equal it.
    Unscored candidates rank last."""
    order = {candidate_id: index for index, candidate_id in enumerate(pool)}

    def key(candidate_id: str) -> tuple[bool, float, int, int]:
        value = validation_value(state, candidate_id)
        handicap = margin if candidate_id == ROOT_ID else 0.0
        ranked_value = -((value or 0.0) + handicap)
        return (value is None, ranked_value, state["candidates"][candidate_id]["depth"], order[candidate_id])

    return [
        ValidationEntry(
            id=candidate_id,
            validation=validation_value(state, candidate_id),
            reward=reward_of(state, candidate_id),
            kept=False,
        )
        for candidate_id in sorted(pool, key=key)
    ]


def select_on_validation(state: PromptOptState, runtime: Runtime[DrpoContext]) -> dict[str, Any]:
    services = services_of(runtime)
    check_validation(state, services)  # unusable validation verdicts stop the run (resumably), never rank
    search = services.settings.search
    width = strategy_for(search.strategy).width(search.beam_width)
    ranked = rank_on_validation(state, validation_pool(state), search.validation_margin)
    beam = [entry["id"] for entry in ranked[:width]]
    ranked = [ValidationEntry(**{**entry, "kept": entry["id"] in beam}) for entry in ranked]  # type: ignore[typeddict-item]
    emit(
        ValidatedEvent(
            event="validated",
            depth=state["depth"],
            beam=[BeamValue(id=entry["id"], path_value=entry["validation"]) for entry in ranked if entry["kept"]],
        )
    )
    return {"beam": beam, "validated": {str(state["depth"]): ranked}}


def validation_summary(state: PromptOptState, margin: float) -> dict[str, Any] | None:
    """What result.json reports about validation: the queries, every validated candidate's value, the
    margin, and whether any proposal beat the initial prompt by it (None when validation is off)."""
    queries = state.get("validation_queries", [])
    if not queries:
        return None
    values: dict[str, float | None] = {}
    for depth in sorted(state.get("validated", {}), key=int):
        for entry in state["validated"][depth]:
            values.setdefault(entry["id"], entry["validation"])
    initial = values.get(ROOT_ID)
    best_id = state["beam"][0] if state.get("beam") else ROOT_ID
    best_value = values.get(best_id)
    beat = best_id != ROOT_ID and state["candidates"][best_id]["prompt"] != state["candidates"][ROOT_ID]["prompt"]
    by_margin = f" by more than {margin:g}" if margin else ""
    note = (
        f"a proposal beat the initial prompt{by_margin} on {len(queries)} validation queries"
        if beat
        else f"no proposal beat the initial prompt{by_margin} on {len(queries)} validation queries; "
        "the initial prompt is returned"
    )
    return {
        "queries": list(queries),
        "rewards": values,
        "initial": initial,
        "best": best_value,
        "margin": margin,
        "beat_initial": beat,
        "note": note,
    }
