"""Validate components against their functor type: every error with its JSON path.

Pure functions over plain data, run inline for small batches and in a pool worker for big
ones (`validate_components` takes the registry's plain configuration, which pickles cheaply;
the worker builds the registry once per configuration digest).

A component is checked in two steps. First its type is resolved: the declared
`functor_type`, else the type of its `phase`, else the type listing its `functor`. A type
that is unknown or belongs to another phase stops there, with one error on `functor_type`
and the closest valid type as suggestion: checking attributes against a type the component
must change would only produce noise. Then the component is validated against the type's
JSON Schema (jsonschema, draft 2020-12) and every error becomes a finding with its path,
e.g. `components[2].attrs.material_strength`, and a deterministic suggestion.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from jsonschema.exceptions import ValidationError as SchemaViolation

from bem.services.functor_types.registry import FunctorType, Registry, build_registry
from bem.services.functor_types.suggestions import Finding, closest, suggest

PHASES = ("alpha", "beta", "gamma")
MAX_MESSAGE = 200
# When several violations at one path suggest different fixes, the most specific wins.
PREFERENCE = ("functor_type", "const", "required", "type", "enum", "minimum", "maximum",
              "additionalProperties")


def validate_components(config: dict[str, Any], components: list[Any]) -> list[dict[str, Any]]:
    """One result per component: {index, id, functor_type, valid, errors, suggestions}."""
    registry = build_registry(config)
    return [validate_one(registry, i, c) for i, c in enumerate(components)]


def validate_one(registry: Registry, index: int, component: Any) -> dict[str, Any]:
    prefix = f"components[{index}]"
    type_name, findings = resolve_type(registry, component)
    if type_name is not None:
        violations = registry.validators[type_name].iter_errors(component)
        findings = _findings(violations)
    errors: list[dict[str, str]] = []
    suggestions: dict[str, Finding] = {}
    for f in sorted(findings, key=lambda f: (_path(prefix, f.path), f.keyword)):
        path = _path(prefix, f.path)
        errors.append({"path": path, "keyword": f.keyword, "message": f.message})
        # One suggestion per path: `phase: "delta"` breaks both the type's const and the
        # base enum, and only the const says which phase the type needs.
        kept = suggestions.get(path)
        if f.suggestion is not None and (
                kept is None or PREFERENCE.index(f.keyword) < PREFERENCE.index(kept.keyword)):
            suggestions[path] = f
    return {"index": index, "id": _id(component), "functor_type": type_name,
            "valid": not errors, "errors": errors,
            "suggestions": [{"path": path, **(f.suggestion or {})}
                            for path, f in suggestions.items()]}


def _id(component: Any) -> str | None:
    ident = component.get("id") if isinstance(component, dict) else None
    return ident if isinstance(ident, str) else None


def _path(prefix: str, parts: Iterable[str | int]) -> str:
    return prefix + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)


# --- step 1: which type -----------------------------------------------------------------------
def resolve_type(registry: Registry, component: Any) -> tuple[str | None, list[Finding]]:
    """(type name, []) when the type is clear, else (None, [the finding on functor_type])."""
    if not isinstance(component, dict):
        return None, [Finding((), "type", "a component must be an object", None)]
    declared = component.get("functor_type")
    phase = component.get("phase") if component.get("phase") in PHASES else None
    functor = component.get("functor") if isinstance(component.get("functor"), str) else None
    candidates = registry.types_in(phase) if phase else list(registry.types.values())
    if declared is None:
        chosen = _by_functor(candidates, functor)
        if chosen is None and len(candidates) == 1:
            chosen = candidates[0]
        if chosen is not None:
            return chosen.name, []
        best = _best(candidates, functor, "")
        message = "missing: give functor_type or phase (the functor names no known type)"
        return None, [_retype(message, best, "the type with the most similar functor")]
    if not isinstance(declared, str) or declared not in registry.types:
        known = ", ".join(registry.types)
        message = f"unknown functor type {declared!r} (known: {known})"
        why = f"the closest type valid in phase {phase}" if phase else "the most similar type"
        return None, [_retype(message, _best(candidates, functor, str(declared)), why)]
    own = registry.types[declared]
    if phase is not None and own.phase != phase:
        message = f"{declared} runs in phase {own.phase}, but the component is in phase {phase}"
        best = _best(candidates, functor, declared)
        return None, [_retype(message, best, f"the closest type valid in phase {phase}")]
    return declared, []


def _by_functor(candidates: list[FunctorType], functor: str | None) -> FunctorType | None:
    return next((t for t in candidates if functor in t.functors), None)


def _best(candidates: list[FunctorType], functor: str | None, hint: str) -> FunctorType | None:
    """The candidate listing the functor, else the closest by type name, else by functor."""
    if not candidates:
        return None
    owner = _by_functor(candidates, functor)
    if owner is not None:
        return owner
    if hint:
        return next(t for t in candidates if t.name == closest(hint, [t.name for t in candidates]))
    by_functor = {f: t for t in candidates for f in t.functors}
    return by_functor[closest(functor or "", list(by_functor))]


def _retype(message: str, best: FunctorType | None, why: str) -> Finding:
    suggestion = None if best is None else {
        "action": "replace", "value": best.name, "reason": why}
    return Finding(("functor_type",), "functor_type", message, suggestion)


# --- step 2: the schema -----------------------------------------------------------------------
def _findings(violations: Iterable[SchemaViolation]) -> list[Finding]:
    """Schema violations as findings; a missing or extra property is named in its path.

    jsonschema reports those on the parent object (one error per missing property, one for
    all extras); the path an operator wants ends at the property itself.
    """
    seen: dict[tuple[tuple[str | int, ...], str], Finding] = {}
    for v in violations:
        base = tuple(v.absolute_path)
        if v.validator == "required":
            for name in v.validator_value:
                if isinstance(v.instance, dict) and name not in v.instance:
                    _add(seen, v, (*base, name), f"required property {name!r} is missing")
        elif v.validator == "additionalProperties" and isinstance(v.instance, dict):
            declared = v.schema.get("properties", {})
            for name in sorted(k for k in v.instance if k not in declared):
                _add(seen, v, (*base, name), f"unexpected property {name!r}")
        else:
            _add(seen, v, base, _short(v.message))
    return list(seen.values())


def _add(seen: dict[tuple[tuple[str | int, ...], str], Finding], v: SchemaViolation,
         path: tuple[str | int, ...], message: str) -> None:
    # The same problem may be reported by the base schema and by the type's own one (both
    # require `functor`); keep one finding, with a suggestion if either schema gives one.
    key = (path, str(v.validator))
    found = seen.get(key)
    if found is None or found.suggestion is None:
        seen[key] = Finding(path, str(v.validator), message, suggest(v, path))


def _short(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[:MAX_MESSAGE - 3] + "..."
