"""Tolerant parsing of judge, selector and optimizer output, with validation.

Extraction accepts code fences, prose around the JSON, and scores written as strings;
validation is strict about what the graph needs. Callers retry with the validation error
fed back, then record an explicit, counted failure: nothing is ever silently scored 0.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator

from drpo.prompts import aspect_definitions


class OutputParseError(ValueError):
    """Model output that cannot be turned into the structure asked for."""


FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)


def extract_json_object(text: str) -> dict[str, Any]:
    """The first JSON object in ``text``, tolerating fences and prose around it."""
    if not text or not text.strip():
        raise OutputParseError("the reply was empty")
    candidates = [match.group(1) for match in FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder(strict=False)
    for candidate in candidates:
        stripped = candidate.strip()
        for start, char in enumerate(stripped):
            if char != "{":
                continue
            try:
                value, _ = decoder.raw_decode(stripped, start)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    raise OutputParseError("no JSON object found in the reply")


SCORE_PATTERN = re.compile(r"^\s*([1-5])(?:\.0+)?\s*(?:/\s*5)?\s*$")


def parse_score(value: Any) -> int:
    """A 1-5 integer score from 4, 4.0, "4", "4/5"; anything else is an error."""
    if isinstance(value, bool):
        raise OutputParseError(f"score {value!r} is not a number from 1 to 5")
    if isinstance(value, int | float) and float(value).is_integer() and 1 <= value <= 5:
        return int(value)
    if isinstance(value, str) and (match := SCORE_PATTERN.match(value)):
        return int(match.group(1))
    raise OutputParseError(f"score {value!r} is not a whole number from 1 to 5")


def _canonical_aspect_names() -> dict[str, str]:
    return {_fold(name): name for name in aspect_definitions()}


def _fold(name: str) -> str:
    return re.sub(r"[^a-z]", "", name.lower())


def canonical_aspect(name: str) -> str:
    """Map 'critical thinking' to 'Critical-Thinking'; unknown names are kept as proposed."""
    return _canonical_aspect_names().get(_fold(name), name.strip())


class AspectsSelection(BaseModel):
    reasoning: str = ""
    selected_aspects: list[str]


class AspectSelectionReply(BaseModel):
    """The selector's reply, with aspect names normalized and de-duplicated."""

    query_analysis: dict[str, Any] = Field(default_factory=dict)
    aspects_selection: AspectsSelection
    new_aspect_definitions: dict[str, str] = Field(default_factory=dict)

    @field_validator("query_analysis", mode="before")
    @classmethod
    def _analysis_any(cls, value: Any) -> Any:
        return value if isinstance(value, dict) else {"text": str(value)}

    @field_validator("new_aspect_definitions", mode="before")
    @classmethod
    def _definitions_any(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return {}
        return {str(key): str(text) for key, text in value.items() if str(key).strip() and text}


def parse_aspect_selection(data: dict[str, Any]) -> dict[str, Any]:
    """Validate a selection: 2-5 distinct aspects, each known or defined (a proposal never crashes)."""
    try:
        reply = AspectSelectionReply.model_validate(data)
    except ValidationError as error:
        raise OutputParseError(_short_validation(error)) from None
    known = aspect_definitions()
    chosen: list[str] = []
    for raw in reply.aspects_selection.selected_aspects:
        if not isinstance(raw, str) or not raw.strip():
            continue
        name = canonical_aspect(raw)
        if name not in chosen:
            chosen.append(name)
    if not 2 <= len(chosen) <= 5:
        raise OutputParseError(f"selected_aspects must hold 2 to 5 distinct aspects, got {len(chosen)}")
    proposed = {canonical_aspect(key): text for key, text in reply.new_aspect_definitions.items()}
    definitions = {}
    new_aspects = []
    for name in chosen:
        if name in known:
            definitions[name] = known[name]
        else:
            new_aspects.append(name)
            definitions[name] = proposed.get(name) or f"The response shows good {name.lower()}."
    return {
        "aspects": chosen,
        "definitions": definitions,
        "reasoning": reply.aspects_selection.reasoning.strip(),
        "new_aspects": new_aspects,
        "analysis": {key: str(value) for key, value in reply.query_analysis.items()},
    }


def parse_evaluation(data: dict[str, Any], aspects: list[str]) -> dict[str, dict[str, Any]]:
    """Scores and rationales for exactly the requested aspects (matched case-insensitively)."""
    if len(data) == 1 and isinstance(next(iter(data.values())), dict):
        inner = next(iter(data.values()))
        if _fold(next(iter(data))) in {"evaluation", "evaluations", "scores"}:
            data = inner
    by_fold = {_fold(str(key)): value for key, value in data.items()}
    result: dict[str, dict[str, Any]] = {}
    missing = []
    for aspect in aspects:
        entry = by_fold.get(_fold(aspect))
        if entry is None:
            missing.append(aspect)
            continue
        if isinstance(entry, dict):
            score = parse_score(entry.get("score"))
            rationale = str(entry.get("rationale", "")).strip()
        else:
            score = parse_score(entry)
            rationale = ""
        result[aspect] = {"score": score, "rationale": rationale}
    if missing:
        raise OutputParseError(f"missing scores for aspects: {', '.join(missing)}")
    return result


class RewriteReply(BaseModel):
    """Shared shape of the optimizer's replies: free-text analysis and thought, plus one rewritten text."""

    analysis: str = ""
    thought: str = ""

    @field_validator("analysis", "thought", mode="before")
    @classmethod
    def _text(cls, value: Any) -> str:
        return "" if value is None else str(value)


class TransitionReply(RewriteReply):
    new_system_prompt: str


class ResponseRewriteReply(RewriteReply):
    new_response: str


def _rewritten_text(model: type[RewriteReply], data: dict[str, Any], field: str) -> tuple[RewriteReply, str]:
    """Validate an optimizer reply; its rewritten field with literal backslash-n sequences made newlines."""
    try:
        reply = model.model_validate(data)
    except ValidationError as error:
        raise OutputParseError(_short_validation(error)) from None
    return reply, str(getattr(reply, field)).replace("\\n", "\n").strip()


def parse_transition(data: dict[str, Any]) -> dict[str, str]:
    """A non-empty new system prompt (literal backslash-n sequences become newlines)."""
    reply, prompt = _rewritten_text(TransitionReply, data, "new_system_prompt")
    if len(prompt) < 10:
        raise OutputParseError("new_system_prompt is empty or too short")
    return {"new_system_prompt": prompt, "analysis": reply.analysis, "thought": reply.thought}


def _short_validation(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "reply"
    return f"{where}: {first['msg']}"


def aspect_selection_schema() -> dict[str, Any]:
    """JSON schema sent as response_format where the server supports it (bounded strings)."""
    text = {"type": "string", "maxLength": 200}
    return {
        "type": "object",
        "properties": {
            "query_analysis": {
                "type": "object",
                "properties": {
                    key: text for key in ("main_topic", "user_intent", "ambiguities", "response_format", "challenges")
                },
                "required": ["main_topic", "user_intent", "ambiguities", "response_format", "challenges"],
            },
            "aspects_selection": {
                "type": "object",
                "properties": {
                    "reasoning": {"type": "string", "maxLength": 400},
                    "selected_aspects": {
                        "type": "array",
                        "items": {"type": "string", "maxLength": 40},
                        "minItems": 2,
                        "maxItems": 5,
                    },
                },
                "required": ["reasoning", "selected_aspects"],
            },
            "new_aspect_definitions": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        "required": ["query_analysis", "aspects_selection"],
    }


def evaluation_schema(aspects: list[str]) -> dict[str, Any]:
    entry = {
        "type": "object",
        "properties": {
            "rationale": {"type": "string", "maxLength": 300},
            "score": {"type": "integer", "minimum": 1, "maximum": 5},
        },
        "required": ["rationale", "score"],
    }
    return {"type": "object", "properties": {aspect: entry for aspect in aspects}, "required": list(aspects)}


def transition_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "analysis": {"type": "string", "maxLength": 300},
            "thought": {"type": "string", "maxLength": 200},
            "new_system_prompt": {"type": "string", "minLength": 10, "maxLength": 1500},
        },
        "required": ["analysis", "thought", "new_system_prompt"],
    }


def parse_response_rewrite(data: dict[str, Any]) -> dict[str, str]:
    """A non-empty rewritten ICL answer, without the reference format's <START>/<END> markers."""
    reply, answer = _rewritten_text(ResponseRewriteReply, data, "new_response")
    answer = answer.removeprefix("<START>").removesuffix("<END>").strip()
    if len(answer) < 10:
        raise OutputParseError("new_response is empty or too short")
    return {"new_response": answer, "analysis": reply.analysis, "thought": reply.thought}


def response_rewrite_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "analysis": {"type": "string", "maxLength": 300},
            "thought": {"type": "string", "maxLength": 200},
            "new_response": {"type": "string", "minLength": 10, "maxLength": 2500},
        },
        "required": ["analysis", "thought", "new_response"],
    }
