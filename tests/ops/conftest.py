"""One private redis-server for the module's tests, emptied around each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis as redis_py

from tests.support import RedisServer, redis_server


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with redis_server() as srv:
        yield srv


@pytest.fixture
def client(server: RedisServer) -> Iterator[redis_py.Redis]:
    r = redis_py.Redis.from_url(server.url)
    r.flushall()
    yield r
    r.flushall()
    r.close()
