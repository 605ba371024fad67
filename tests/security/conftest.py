"""One `single` cluster (every service in one process, a private Redis) shared by the
hostile-input modules: starting it once saves the suite a cluster start per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import Topology, redis_server


@pytest.fixture(scope="package")
def cluster() -> Iterator[Topology]:
    with redis_server() as redis, Topology(["single"], redis_url=redis.url) as topo:
        yield topo
