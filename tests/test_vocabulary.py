"""One home for each shared word: a key prefix, a message format, a metric name, an answer's
shape. Where a word must be written twice (a Prometheus name in the dashboard's parser, a
service's answer as a GraphQL type), this checks that both sides still say the same."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from bem import redis_keys
from bem.errors import LISTED_PROBLEMS, ValidationFailed
from bem.runtime.metrics import Metrics
from bem.services.dag_alpha import models as dag_alpha
from bem.services.functor_types import models as functor_types
from bem.services.graph_runtime import models as graph_runtime
from bem.services.graphql import dag, formulas, optimization, registry, types
from bem.services.optimization import models as optimization_models
from bem.services.sfde import models as sfde

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "bem"


def sources() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_redis_key_prefixes_are_written_in_one_module() -> None:
    literal = re.compile(r"""b?["']bem:[a-z]""")
    elsewhere = [f"{p.relative_to(SRC)}:{n}" for p in sources() if p.name != "redis_keys.py"
                 for n, line in enumerate(p.read_text().splitlines(), 1) if literal.search(line)]
    assert not elsewhere, f"Redis key prefixes outside bem/redis_keys.py: {elsewhere}"
    prefixes = [v for k, v in vars(redis_keys).items() if k.isupper() and isinstance(v, str)]
    assert len(set(prefixes)) == len(prefixes)  # no two owners of one prefix
    assert all(p.startswith("bem:") and p.endswith(":") for p in prefixes)


def test_blas_thread_variables_are_set_in_one_place() -> None:
    where = [p.relative_to(SRC).as_posix() for p in sources()
             if "OPENBLAS_NUM_THREADS" in p.read_text()]
    assert where == ["runtime/pool.py"]


def test_the_many_problems_message_has_one_wording() -> None:
    """`a: why; b: why; ...; and N more` is written once (bem.errors.problems_message)."""
    pattern = re.compile(r"and \{[^}]*\} more")
    where = [p.relative_to(SRC).as_posix() for p in sources() if pattern.search(p.read_text())]
    # compat/check.py: a line of `bem compat check`'s report, not an error answer
    assert where == ["compat/check.py", "errors.py"]
    details = [{"field": f"f{i}", "message": "bad", "type": "value_error"} for i in range(7)]
    exc = ValidationFailed.naming(details)
    assert exc.field == "f0" and exc.details == details
    assert exc.message == "; ".join(f"f{i}: bad" for i in range(LISTED_PROBLEMS)) + \
        f"; and {7 - LISTED_PROBLEMS} more"


def exported_metric_names() -> set[str]:
    names = set()
    for family in Metrics("x").registry.collect():
        names.add(family.name)
        names.update(family.name + s for s in ("_total", "_bucket", "_sum", "_count"))
    return names


# Files that name metrics besides runtime/metrics.py, which defines them (the Prometheus
# rules and Grafana queries have their own check: tests/deploy/test_monitoring.py).
METRIC_READERS = ["gateway/metrics_summary.py", "services/dashboard/static/dashboard.js"]
NOT_METRICS = {"bem_compute", "bem_logic", "bem_data"}  # Docker networks and volumes


@pytest.mark.parametrize("path", [SRC / p for p in METRIC_READERS]
                         + sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"],
                         ids=lambda p: p.name)
def test_every_metric_name_written_elsewhere_is_exported(path: Path) -> None:
    written = set(re.findall(r"\bbem_[a-z0-9_]*[a-z0-9]", path.read_text())) - NOT_METRICS
    unknown = written - exported_metric_names()
    assert not unknown, f"{path.name} names metrics no process exports: {sorted(unknown)}"


# A GraphQL type filled with `pick(Type, answer)` from a service's answer, and the model of
# that answer: a field the model does not have would be null for ever.
SHAPES: list[tuple[Any, type[BaseModel]]] = [
    (types.Summary, graph_runtime.Summary), (types.Components, graph_runtime.Components),
    (types.DagCheck, graph_runtime.DagCheck), (types.Path, graph_runtime.PathResult),
    (types.StoredGraph, graph_runtime.StoredGraph),
    (dag.NodeRun, dag_alpha.NodeResult), (dag.DagEvaluation, dag_alpha.Evaluation),
    (formulas.FormulaParameter, sfde.ParameterInfo), (formulas.FormulaOutput, sfde.OutputInfo),
    (formulas.ExpressionValue, sfde.ExpressionResult),
    (registry.FunctorType, functor_types.TypeSummary),
    (registry.FunctorTypeDetail, functor_types.TypeDetail),
    (registry.SchemaError, functor_types.SchemaError),
    (registry.Suggestion, functor_types.Suggestion),
    (registry.Affinity, functor_types.AffinityMatrix),
    (registry.LinkAnswer, functor_types.LinkAnswer),
    (registry.PlacementAnswer, functor_types.PlacementAnswer),
    (optimization.ChosenOption, optimization_models.Chosen),
    (optimization.ParameterOptimum, optimization_models.ParametersResult),
]


# Fields the converter adds to the answer before picking (dag.py, registry.py, optimization.py).
DERIVED = {"NodeRun": {"node"}, "FunctorTypeDetail": {"schema"}, "ParameterOptimum": {"result"}}


@pytest.mark.parametrize(("graphql_type", "model"), SHAPES, ids=lambda t: t.__name__)
def test_graphql_types_mirror_the_service_answers(graphql_type: Any,
                                                  model: type[BaseModel]) -> None:
    fields = set(graphql_type.__dataclass_fields__)
    extra = fields - set(model.model_fields) - DERIVED.get(graphql_type.__name__, set())
    assert not extra, f"{graphql_type.__name__} has fields {model.__name__} lacks: {extra}"
