"""Where every service runs, as the runtime needs to know it.

The runtime never imports the cluster tables (`bem.clusters`): like uvicorn, which is handed
an application and never imports one, it is handed this object by `bem serve`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Placement:
    cluster_of: Mapping[str, str]  # every service -> its cluster (BACKEND_<CLUSTER>_URL)
    gateway: frozenset[str]  # services on public ports: BIND_HOST, MAX_CLIENT_CONNECTIONS

    @property
    def services(self) -> tuple[str, ...]:
        return tuple(self.cluster_of)

    def routable(self) -> tuple[str, ...]:
        """The services the gateway routes `/{service}/...` to: every one but its own."""
        return tuple(s for s in self.cluster_of if s not in self.gateway)
