"""Every recorded request of the old clients, replayed against real deployments.

`single`: one `bem serve single` process on embedded defaults (what `./scripts/up` runs);
`optimized`: compute, logic and gateway processes on a private redis-server. Each case
asserts exactly what its old client reads from the answer (bem/compat/cases); a failure
names the old file, the request and the part of the answer that is wrong.
"""

from __future__ import annotations

from collections.abc import Iterator

import aiohttp
import pytest

from bem.compat.cases import all_cases
from bem.compat.catalogue import Case
from bem.compat.check import replay
from tests.support import Topology, redis_server

pytestmark = pytest.mark.slow

CASES = all_cases()


@pytest.fixture(scope="module", params=["single", "optimized"])
def deployment(request: pytest.FixtureRequest) -> Iterator[Topology]:
    if request.param == "single":
        with Topology(["single"]) as topo:
            yield topo
        return
    with redis_server() as redis, \
            Topology(["compute", "logic", "gateway"], redis_url=redis.url) as topo:
        yield topo


@pytest.mark.parametrize("case", CASES, ids=[f"{c.source}:{c.name}" for c in CASES])
async def test_old_client_request(case: Case, deployment: Topology) -> None:
    urls = {s: deployment.url(s) for s in case.services}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        failure = (await replay(case, urls, http)).failure
    assert failure is None, f"{case.source}: {case.exchange.describe()} - {case.name}: " \
                            f"{failure}"
