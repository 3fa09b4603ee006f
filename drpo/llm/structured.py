"""Tolerant parsing of judge, selector and optimizer output, with validation.

Extraction accepts code fences, prose around the JSON, and scores written as strings;
validation is strict about what the graph needs. Callers retry with the validation error
fed back, then record an explicit, counted failure: nothing is ever silently scored 0.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from drpo.prompts import aspect_definitions

T = TypeVar("T")


class OutputParseError(ValueError):
    """Model output that cannot be turned into the structure asked for. ``kind`` names the failure for the
    trace, so callers decide by type and never by the wording of a message."""

    kind: ClassVar[str] = "unparseable"


class RejectedContent(OutputParseError):
    """Output that parsed but whose content is refused (a degenerate proposed prompt). Re-asked without
    showing the refused reply back: small models copy what they are shown, so the echo got it repeated."""

    kind: ClassVar[str] = "rejected"


class TooLong(OutputParseError):
    """Output that parsed but is longer than the limit set for it; re-asked with the limit named."""

    kind: ClassVar[str] = "too_long"


FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
SMART_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"})


def _strict_objects(text: str) -> list[dict[str, Any]]:
    """Every top-level JSON object that parses as written, in order."""
    decoder = json.JSONDecoder(strict=False)
    found: list[dict[str, Any]] = []
    index = 0
    while (start := text.find("{", index)) >= 0:
        try:
            value, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            index = start + 1
            continue
        if isinstance(value, dict):
            found.append(value)
        index = end
    return found


def _repaired_objects(text: str) -> list[dict[str, Any]]:
    """Objects that need repair (trailing commas, single quotes, smart quotes, // comments), via json-repair."""
    import json_repair

    value = json_repair.loads(text.translate(SMART_QUOTES))
    values = value if isinstance(value, list) else [value]
    return [item for item in values if isinstance(item, dict) and item]


def json_objects(text: str) -> Iterator[dict[str, Any]]:
    """Candidate JSON objects in a model reply, most likely first: fenced blocks, then the bare text,
    each as written, then repaired. Callers validate each and keep the first that fits, so a format
    example printed before the real answer does not win, and repair runs only when nothing fits."""
    if not text or not text.strip():
        raise OutputParseError("the reply was empty")
    sources = [match.group(1) for match in FENCE.finditer(text)] + [text]
    seen: list[dict[str, Any]] = []
    for reader in (_strict_objects, _repaired_objects):
        for source in sources:
            for value in reader(source):
                if value not in seen:
                    seen.append(value)
                    yield value
    if not seen:
        raise OutputParseError("no JSON object found in the reply")


def extract_json_object(text: str) -> dict[str, Any]:
    """The first JSON object in ``text``, tolerating fences, prose around it and common JSON slips."""
    return next(json_objects(text))


def parse_first_valid(text: str, parse: Callable[[dict[str, Any]], T]) -> T:
    """``parse`` applied to each candidate object in turn; the first that validates wins.
    When none does, the error of the first candidate is raised (it is what the model meant most likely)."""
    first_error: OutputParseError | None = None
    for candidate in json_objects(text):
        try:
            return parse(candidate)
        except OutputParseError as error:
            first_error = first_error or error
    assert first_error is not None
    raise first_error


QUERY_ANALYSIS_FIELDS = ("main_topic", "user_intent", "ambiguities", "response_format", "challenges")


def _plain(schema: dict[str, Any], defs: dict[str, Any]) -> Any:
    """A pydantic JSON schema without $refs, titles or defaults: the small shape servers accept."""
    if isinstance(schema, list):
        return [_plain(item, defs) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        return _plain(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    return {
        key: _plain(value, defs) if key != "properties" else {name: _plain(v, defs) for name, v in value.items()}
        for key, value in schema.items()
        if key not in ("title", "default", "$defs", "description")
    }


def _schema_of(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema()
    return _plain(raw, raw.get("$defs", {}))


def reply_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema sent as ``response_format`` for a reply model, generated from the model itself."""
    return _schema_of(model)


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
    return {fold_name(name): name for name in aspect_definitions()}


def fold_name(name: str) -> str:
    """An aspect or key name folded for matching: lower case, letters only."""
    return re.sub(r"[^a-z]", "", name.lower())


def canonical_aspect(name: str) -> str:
    """Map 'critical thinking' to 'Critical-Thinking'; unknown names are kept as proposed."""
    return _canonical_aspect_names().get(fold_name(name), name.strip())


def bounded(max_length: int, **extra: Any) -> Any:
    """A length bound sent in the schema (constrained decoding keeps small models short) but not
    enforced on replies, so an over-long rationale from an unconstrained provider is not an error."""
    return {"maxLength": max_length, **extra}


class QueryAnalysis(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra={"required": list(QUERY_ANALYSIS_FIELDS)})

    main_topic: str = Field("", json_schema_extra=bounded(200))
    user_intent: str = Field("", json_schema_extra=bounded(200))
    ambiguities: str = Field("", json_schema_extra=bounded(200))
    response_format: str = Field("", json_schema_extra=bounded(200))
    challenges: str = Field("", json_schema_extra=bounded(200))


class AspectsSelection(BaseModel):
    model_config = ConfigDict(json_schema_extra={"required": ["reasoning", "selected_aspects"]})

    reasoning: str = Field("", json_schema_extra=bounded(400))
    selected_aspects: list[str] = Field(
        json_schema_extra={"minItems": 2, "maxItems": 5, "items": {"type": "string", "maxLength": 40}}
    )


class AspectSelectionReply(BaseModel):
    """The selector's reply, with aspect names normalized and de-duplicated."""

    model_config = ConfigDict(json_schema_extra={"required": ["query_analysis", "aspects_selection"]})

    query_analysis: dict[str, Any] = Field(default_factory=dict, json_schema_extra=_schema_of(QueryAnalysis))
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


def aspect_entries(data: dict[str, Any], aspects: list[str]) -> dict[str, tuple[Any, str]]:
    """(raw score, rationale) for exactly the requested aspects, matched case-insensitively, with a
    wrapper such as {"evaluation": {...}} unwrapped; a missing aspect is an error (so it is re-asked)."""
    wrapper = len(data) == 1 and fold_name(next(iter(data))) in {"evaluation", "evaluations", "scores"}
    if wrapper and isinstance(next(iter(data.values())), dict):
        data = next(iter(data.values()))
    by_fold = {fold_name(str(key)): value for key, value in data.items()}
    found: dict[str, tuple[Any, str]] = {}
    missing = []
    for aspect in aspects:
        entry = by_fold.get(fold_name(aspect))
        if entry is None:
            missing.append(aspect)
        elif isinstance(entry, dict):
            found[aspect] = (entry.get("score"), str(entry.get("rationale", "")).strip())
        else:
            found[aspect] = (entry, "")
    if missing:
        raise OutputParseError(f"missing scores for aspects: {', '.join(missing)}")
    return found


def parse_evaluation(data: dict[str, Any], aspects: list[str]) -> dict[str, dict[str, Any]]:
    """Scores and rationales for exactly the requested aspects (matched case-insensitively)."""
    return {
        aspect: {"score": parse_score(raw), "rationale": rationale}
        for aspect, (raw, rationale) in aspect_entries(data, aspects).items()
    }


class RewriteReply(BaseModel):
    """Shared shape of the optimizer's replies: free-text analysis and thought, plus one rewritten text."""

    analysis: str = Field("", json_schema_extra=bounded(300))
    thought: str = Field("", json_schema_extra=bounded(200))

    @field_validator("analysis", "thought", mode="before")
    @classmethod
    def _text(cls, value: Any) -> str:
        return "" if value is None else str(value)


class TransitionReply(RewriteReply):
    model_config = ConfigDict(json_schema_extra={"required": ["analysis", "thought", "new_system_prompt"]})

    new_system_prompt: str = Field(json_schema_extra=bounded(1500, minLength=10))


class ResponseRewriteReply(RewriteReply):
    model_config = ConfigDict(json_schema_extra={"required": ["analysis", "thought", "new_response"]})

    new_response: str = Field(json_schema_extra=bounded(2500, minLength=10))


class AspectVerdict(BaseModel):
    """One aspect of the judge's reply (the schema of each entry; parsing is tolerant, see parse_evaluation)."""

    model_config = ConfigDict(json_schema_extra={"required": ["rationale", "score"]})

    rationale: str = Field(json_schema_extra=bounded(300))
    score: int = Field(ge=1, le=5)


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


def evaluation_schema(aspects: list[str], rationale: str = "first") -> dict[str, Any]:
    """The judge's reply schema: one AspectVerdict per selected aspect, all required (without its
    rationale when ``rationale`` is none)."""
    entry = reply_schema(AspectVerdict)
    if rationale == "none":
        entry = {**entry, "properties": {"score": entry["properties"]["score"]}, "required": ["score"]}
    return {"type": "object", "properties": {aspect: entry for aspect in aspects}, "required": list(aspects)}


def parse_response_rewrite(data: dict[str, Any]) -> dict[str, str]:
    """A non-empty rewritten ICL answer, without the reference format's <START>/<END> markers."""
    reply, answer = _rewritten_text(ResponseRewriteReply, data, "new_response")
    answer = answer.removeprefix("<START>").removesuffix("<END>").strip()
    if len(answer) < 10:
        raise OutputParseError("new_response is empty or too short")
    return {"new_response": answer, "analysis": reply.analysis, "thought": reply.thought}
