"""Hostile HTTP input: schemathesis against every service's OpenAPI, and through the gateway.

The `single` cluster of conftest.py (every service, a private Redis) is fuzzed port by port from
its own /openapi.json, with schema-valid (positive) and schema-violating (negative) cases
for every operation. The six backends are fuzzed twice: on their own port, and through the
gateway's REST routing (`/{service}/...` on the graphql port), which must pass every answer
through intact. Every answer is checked by schemathesis: never a 5xx, a documented status,
content type and headers, a body matching the response schema, and schema-violating input
refused with a 4xx.

One check is left out: `positive_data_acceptance` (schema-valid input must be accepted). A
JSON Schema cannot say that an edge must join two nodes of its graph or that a formula name
must exist, so such input is rightly a 4xx that names the field.

BEM_FUZZ_EXAMPLES sets the examples per operation and mode (default 8, the CI run; the
deep run in docs/security.md uses 100). A summary of what was sent and answered goes to
test-output/security-openapi.json.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from bem.clusters import ALL_SERVICES, GATEWAY_SERVICES
from tests.support import REPO, Topology

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("BEM_FUZZ_EXAMPLES", "8"))
BACKENDS = [s for s in ALL_SERVICES if s not in GATEWAY_SERVICES]
TARGETS = [(s, "direct") for s in ALL_SERVICES] + [(s, "gateway") for s in BACKENDS]
REPORT = REPO / "test-output" / "security-openapi.json"


@pytest.fixture(scope="module")
def report() -> Iterator[dict[str, Any]]:
    results: dict[str, Any] = {}
    yield results
    Path(REPORT).parent.mkdir(exist_ok=True)
    Path(REPORT).write_text(json.dumps({"examples_per_operation_and_mode": EXAMPLES,
                                        "targets": results}, indent=2) + "\n")


def fuzz(operation: Any, mode: GenerationMode, base: str, session: requests.Session,
         statuses: Counter[int]) -> str | None:
    """Run one operation's cases; the failure report, or None."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        response = case.call(base_url=base, session=session, timeout=30)
        statuses[response.status_code] += 1
        case.validate_response(response, excluded_checks=[positive_data_acceptance])

    try:
        run()
    except Unsatisfiable:  # nothing can violate the schema of a parameterless GET
        return None
    except (Exception, BaseExceptionGroup) as exc:  # schemathesis reports an ExceptionGroup
        return f"{operation.label} ({mode.value}):\n{exc}"
    return None


@pytest.mark.parametrize(("service", "via"), TARGETS, ids=[f"{s}-{v}" for s, v in TARGETS])
def test_no_5xx_and_answers_match_the_schema(cluster: Topology, report: dict[str, Any],
                                             service: str, via: str) -> None:
    schema = schemathesis.openapi.from_url(cluster.url(service) + "/openapi.json")
    base = cluster.url(service) if via == "direct" else f"{cluster.url('graphql')}/{service}"
    statuses: Counter[int] = Counter()
    failures, operations = [], 0
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            operations += 1
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                failure = fuzz(operation, mode, base, session, statuses)
                if failure:
                    failures.append(failure)
    sent = sum(statuses.values())
    report[f"{service} ({via})"] = {"operations": operations, "requests": sent,
                                    "statuses": dict(sorted(statuses.items())),
                                    "failures": len(failures)}
    print(f"openapi {service} via {via}: {operations} operations, {sent} requests, "
          f"statuses {dict(sorted(statuses.items()))}, failures {len(failures)}")
    assert not any(s >= 500 for s in statuses), statuses
    assert not failures, "\n\n".join(failures)
