"""Seeded selection instances and an independent brute-force solver for them."""

from __future__ import annotations

import itertools
import random
from typing import Any

CRITERIA = ("material", "cost", "time")


def instance(seed: int, components: int, options: int) -> dict[str, Any]:
    """A /select body: costs, three criteria scores, a co2 attribute, budget, 2 constraints."""
    rng = random.Random(seed)
    comps = [{"id": f"C{i}", "options": [
        {"id": f"o{j}", "cost": round(rng.uniform(10, 100), 2),
         "scores": {c: round(rng.random(), 3) for c in CRITERIA},
         "attributes": {"co2": round(rng.uniform(1, 50), 1)}}
        for j in range(options)]} for i in range(components)]

    def between(key: str, share: float) -> float:  # between the cheapest and the average sum
        low = sum(min(_value(o, key) for o in c["options"]) for c in comps)
        mean = sum(sum(_value(o, key) for o in c["options"]) / options for c in comps)
        return round(low + share * (mean - low), 2)

    return {
        "components": comps,
        "budget": between("cost", rng.uniform(0.3, 1.2)),
        "agent_coefficients": {c["id"]: {f"{k}_weight_preference": round(rng.random(), 2)
                                         for k in CRITERIA} for c in comps},
        "constraints": [
            {"name": "co2", "attribute": "co2", "upper": between("co2", rng.uniform(0.3, 1.2))},
            {"name": "not both o0", "terms": [{"component": "C0", "option": "o0"},
                                              {"component": "C1", "option": "o0"}],
             "upper": 1}],
        "mip_gap": 0,
    }


def _value(option: dict[str, Any], key: str) -> float:
    return float(option["cost"] if key == "cost" else option["attributes"][key])


def brute_force(body: dict[str, Any]) -> tuple[float, tuple[int, ...]] | None:
    """The best (weighted score, option indices) over every combination; None if infeasible."""
    comps = body["components"]
    weights = [{k: body["agent_coefficients"][c["id"]][f"{k}_weight_preference"]
                for k in CRITERIA} for c in comps]
    best: tuple[float, tuple[int, ...]] | None = None
    for pick in itertools.product(*(range(len(c["options"])) for c in comps)):
        chosen = [c["options"][j] for c, j in zip(comps, pick, strict=True)]
        if sum(o["cost"] for o in chosen) > body["budget"]:
            continue
        if not all(_satisfied(con, comps, pick) for con in body["constraints"]):
            continue
        score = sum(sum(w[k] * o["scores"][k] for k in CRITERIA)
                    for w, o in zip(weights, chosen, strict=True))
        if best is None or score > best[0]:
            best = (score, pick)
    return best


def _satisfied(con: dict[str, Any], comps: list[dict[str, Any]], pick: tuple[int, ...]) -> bool:
    if "attribute" in con:
        value = sum(c["options"][j]["attributes"][con["attribute"]]
                    for c, j in zip(comps, pick, strict=True))
    else:
        chosen = {(c["id"], c["options"][j]["id"]) for c, j in zip(comps, pick, strict=True)}
        value = sum(t.get("coefficient", 1.0) for t in con["terms"]
                    if (t["component"], t["option"]) in chosen)
    return con.get("lower", -float("inf")) <= value <= con.get("upper", float("inf"))


def knapsack(seed: int, components: int, options: int, resources: int = 3) -> dict[str, Any]:
    """A multi-dimensional knapsack: tight budget and resource limits, hard to prove optimal."""
    rng = random.Random(seed)
    comps = [{"id": f"C{i}", "options": [
        {"id": f"o{j}", "cost": round(rng.uniform(0, 100), 3),
         "scores": {"value": round(rng.random(), 4)},
         "attributes": {f"r{k}": round(rng.uniform(0, 10), 3) for k in range(resources)}}
        for j in range(options)]} for i in range(components)]

    def mean_sum(key: str) -> float:
        return sum(sum(_value(o, key) for o in c["options"]) / options for c in comps)

    return {"components": comps, "budget": round(0.8 * mean_sum("cost"), 3),
            "weights": {"value": 1.0},
            "constraints": [{"attribute": f"r{k}", "upper": round(0.9 * mean_sum(f"r{k}"), 3)}
                            for k in range(resources)]}
