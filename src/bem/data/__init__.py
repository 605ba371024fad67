"""Package data: the sample project V01-V10 that drives the demo and the tests."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import orjson


@cache
def _sample_bytes() -> bytes:
    return resources.files(__package__).joinpath("sample_project.json").read_bytes()


def sample_project() -> dict[str, Any]:
    """A fresh copy of the sample project graph (10 nodes, alpha -> beta -> gamma)."""
    return orjson.loads(_sample_bytes())  # type: ignore[no-any-return]
