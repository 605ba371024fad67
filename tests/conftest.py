"""Shared fixtures: a private redis-server per test, sample graph, in-loop clusters."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bem.data import sample_project
from tests.support import RedisServer, redis_server


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    """A private redis-server on a free port (never the machine's shared one)."""
    with redis_server() as server:
        yield server


@pytest.fixture
def sample() -> dict[str, Any]:
    return sample_project()



def pytest_asyncio_loop_factories(config: Any, item: Any) -> dict[str, Any]:
    """Tests run on uvloop, the loop `bem serve` runs on."""
    import uvloop

    return {"uvloop": uvloop.new_event_loop}
