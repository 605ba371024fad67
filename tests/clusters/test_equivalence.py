"""The same request gives the same answer whether peers are in-process or remote.

`single` runs dag_alpha, graph_runtime and sfde in one process (in-process calls); the
sprawl layout runs each in its own process (every call between them is HTTP).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support import Topology, metric_total


@pytest.fixture(scope="module")
def layouts() -> Iterator[tuple[Topology, Topology]]:
    with Topology(["single"]) as single, \
            Topology(["dag_alpha", "graph_runtime", "sfde"]) as sprawl:
        yield single, sprawl


def both(layouts: tuple[Topology, Topology], service: str, path: str,
         body: Any = None) -> tuple[httpx.Response, httpx.Response]:
    answers = []
    for layout in layouts:
        url = layout.url(service) + path
        answers.append(httpx.post(url, json=body, timeout=30) if body is not None
                       else httpx.get(url, timeout=30))
    return answers[0], answers[1]


def calls(layout: Topology, service: str, transport: str) -> float:
    text = httpx.get(layout.url(service) + "/metrics").text
    return metric_total(text, "bem_service_calls_total", transport=transport)


def test_dag_run_is_identical(layouts: tuple[Topology, Topology],
                              sample: dict[str, Any]) -> None:
    single, sprawl = both(layouts, "dag_alpha", "/run", {"graph": sample})
    assert single.status_code == sprawl.status_code == 200, (single.text, sprawl.text)
    assert single.content == sprawl.content
    # and it really crossed HTTP in one layout and not in the other
    assert calls(layouts[0], "dag_alpha", "http") == 0
    assert calls(layouts[0], "dag_alpha", "inprocess") >= 2
    assert calls(layouts[1], "dag_alpha", "inprocess") == 0
    assert calls(layouts[1], "dag_alpha", "http") >= 2


def test_stored_graph_run_is_identical(layouts: tuple[Topology, Topology],
                                       sample: dict[str, Any]) -> None:
    stored = both(layouts, "graph_runtime", "/graphs", sample)
    assert stored[0].json() == stored[1].json()
    gid = stored[0].json()["graph_id"]
    single, sprawl = both(layouts, "dag_alpha", "/run", {"graph_id": gid})
    assert single.status_code == 200 and single.content == sprawl.content


def test_errors_are_identical(layouts: tuple[Topology, Topology],
                              sample: dict[str, Any]) -> None:
    sample["edges"].append({"source": "V09", "target": "V01", "weight": 1.0})  # V01..V09
    single, sprawl = both(layouts, "dag_alpha", "/run", {"graph": sample})
    assert single.status_code == sprawl.status_code == 422
    assert single.json() == sprawl.json()
    assert "cycle" in single.json()["message"]
    del sample["nodes"][0]["attrs"]["material_strength"]
    sample["edges"].pop()
    single, sprawl = both(layouts, "dag_alpha", "/run", {"graph": sample})
    assert single.status_code == sprawl.status_code == 422
    assert single.json() == sprawl.json()
    assert "graph.nodes[0].attrs.material_strength" in single.json()["message"]
