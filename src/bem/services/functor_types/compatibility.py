"""Phase/type compatibility: where a functor type may run and which types may feed which."""

from __future__ import annotations

from bem.services.functor_types.registry import PHASE_ORDER, Registry


def placement(registry: Registry, functor_type: str, phase: str) -> tuple[bool, str]:
    own = registry.types[functor_type].phase
    if own == phase:
        return True, f"{functor_type} is the {phase}-phase type"
    return False, f"{functor_type} runs in phase {own}, not {phase}"


def link(registry: Registry, source: str, target: str) -> tuple[bool, str]:
    a, b = registry.types[source].phase, registry.types[target].phase
    step = PHASE_ORDER.index(b) - PHASE_ORDER.index(a)
    if target in registry.feeds[source]:
        where = "within phase " + a if step == 0 else f"forward from {a} to {b}"
        return True, f"{source} feeds {target}: results flow {where}"
    if step < 0:
        why = f"results would flow backwards, from {a} to {b}"
    elif step > 1:
        why = f"{a} would skip the {PHASE_ORDER[PHASE_ORDER.index(a) + 1]} phase to reach {b}"
    else:
        why = "the registry does not list this link"
    return False, f"{source} may not feed {target}: {why}"
