"""Deterministic repair suggestions for schema violations (same input, same suggestion).

Each rule reads only the violation and the schema it broke: a missing property gets the
`default` (or `const`, or first `enum` value) of its schema; a number out of range is
clamped to the violated bound; a value outside an enum is replaced by the most similar
allowed value (difflib ratio, ties broken by name); a value of the wrong type is converted
when it is a number or boolean written as a string; an unexpected property is removed.
"""

from __future__ import annotations

import difflib
from typing import Any, NamedTuple

from jsonschema.exceptions import ValidationError as SchemaViolation

Suggestion = dict[str, Any]  # {action: set|replace|clamp|remove, value, reason}


class Finding(NamedTuple):
    path: tuple[str | int, ...]  # inside the component
    keyword: str  # the JSON Schema keyword violated (or functor_type / type)
    message: str
    suggestion: Suggestion | None


def closest(word: str, choices: list[str]) -> str:
    """The most similar choice; ties go to the alphabetically first, so the answer is stable."""
    return min(choices, key=lambda c: (-difflib.SequenceMatcher(None, word, c).ratio(), c))


def suggest(v: SchemaViolation, path: tuple[str | int, ...]) -> Suggestion | None:
    rule = _RULES.get(str(v.validator))
    return rule(v, path) if rule else None


def _missing(v: SchemaViolation, path: tuple[str | int, ...]) -> Suggestion | None:
    prop = v.schema.get("properties", {}).get(path[-1], {})
    value = _fallback(prop)
    if value is _NONE:
        return None
    return {"action": "set", "value": value, "reason": "the type's default for this property"}


def _clamp(v: SchemaViolation, _path: tuple[str | int, ...]) -> Suggestion:
    side = "minimum" if v.validator == "minimum" else "maximum"
    return {"action": "clamp", "value": v.validator_value,
            "reason": f"the nearest allowed value (the {side})"}


def _enum(v: SchemaViolation, _path: tuple[str | int, ...]) -> Suggestion:
    allowed = list(v.validator_value)
    texts = [a for a in allowed if isinstance(a, str)]
    if isinstance(v.instance, str) and texts:
        return {"action": "replace", "value": closest(v.instance, texts),
                "reason": "the most similar allowed value"}
    return {"action": "replace", "value": allowed[0], "reason": "the first allowed value"}


def _const(v: SchemaViolation, _path: tuple[str | int, ...]) -> Suggestion:
    return {"action": "replace", "value": v.validator_value,
            "reason": "the only value allowed for this type"}


def _type(v: SchemaViolation, _path: tuple[str | int, ...]) -> Suggestion | None:
    expected = v.validator_value if isinstance(v.validator_value, list) else [v.validator_value]
    converted = _convert(v.instance, expected)
    if converted is not _NONE:
        return {"action": "set", "value": converted,
                "reason": f"the same value written as {_article(expected[0])}"}
    value = _fallback(v.schema)
    if value is _NONE:
        return None
    return {"action": "set", "value": value, "reason": "the type's default for this property"}


def _remove(_v: SchemaViolation, _path: tuple[str | int, ...]) -> Suggestion:
    return {"action": "remove", "value": None, "reason": "the type does not define it"}


_RULES = {"required": _missing, "minimum": _clamp, "maximum": _clamp, "enum": _enum,
          "const": _const, "type": _type, "additionalProperties": _remove}
_NONE = object()


def _fallback(schema: dict[str, Any]) -> Any:
    if "default" in schema:
        return schema["default"]
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    return _NONE


def _convert(value: Any, expected: list[str]) -> Any:
    """A string holding a number or a boolean, as that number or boolean."""
    if not isinstance(value, str):
        return _NONE
    text = value.strip().lower()
    if "boolean" in expected and text in ("true", "false"):
        return text == "true"
    if "number" in expected or "integer" in expected:
        try:
            number = float(text)
        except ValueError:
            return _NONE
        if number != number or number in (float("inf"), float("-inf")):
            return _NONE
        if "integer" in expected and number.is_integer():
            return int(number)
        return number if "number" in expected else _NONE
    return _NONE


def _article(kind: str) -> str:
    return {"integer": "an integer", "number": "a number", "boolean": "a boolean"}.get(kind, kind)
