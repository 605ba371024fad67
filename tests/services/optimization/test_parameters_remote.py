"""POST /parameters when sfde is another process: the same answer, over HTTP."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.services.optimization.test_parameters import BEAM, H_STAR, M, _bad
from tests.support import Topology


@pytest.mark.slow
def test_the_same_answer_when_sfde_is_another_process() -> None:
    with Topology(["sfde", "optimization"], workers=0) as topo:
        r = httpx.post(topo.url("optimization") + "/parameters", json=BEAM, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["variables"]["h"] == pytest.approx(H_STAR, rel=1e-6)
        bad = httpx.post(topo.url("optimization") + "/parameters",
                         json=_bad(fixed={"b": 0, "M": M}), timeout=60)
        assert (bad.status_code, bad.json()["field"]) == (422, "fixed.b")
        metrics = httpx.get(topo.url("optimization") + "/metrics").text
        calls = re.search(r'bem_service_calls_total\{cluster="optimization",'
                          r'operation="evaluate",outcome="ok",service="optimization",'
                          r'target="sfde",transport="http"\} (\d+)', metrics)
        assert calls is not None and int(calls.group(1)) >= 3, metrics
