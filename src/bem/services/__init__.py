"""The catalogue of services: each is a package with an `api` module defining `service`."""

from __future__ import annotations

import importlib
from functools import cache

from bem.clusters import ALL_SERVICES
from bem.runtime.service import ServiceSpec


@cache
def spec(name: str) -> ServiceSpec:
    """The static definition of a service (imports only its API module)."""
    if name not in ALL_SERVICES:
        raise KeyError(f"unknown service {name!r}")
    module = importlib.import_module(f"bem.services.{name}.api")
    return module.service  # type: ignore[no-any-return]
