"""The GraphQL tests' shared cluster: one `bem serve single` in-loop per test module."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest_asyncio

from bem.runtime.supervisor import Supervisor
from tests.support import run_cluster, url_of


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def cluster() -> AsyncIterator[Supervisor]:
    async with run_cluster("single") as sup:
        yield sup


@pytest_asyncio.fixture(loop_scope="module")
async def http(cluster: Supervisor) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=url_of(cluster, "graphql"), timeout=30) as client:
        yield client
