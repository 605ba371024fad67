"""The gateway: what sits between the clients and the services.

The three gateway services (`services/graphql`, `services/ecm_ws`, `services/dashboard`)
are its ports; what they are built from lives here:

- `access.py`: API keys and per-client rate limits (every gateway port);
- `routing.py`: REST routing `/{service}/{path}` to a replica (the graphql port);
- `platform_health.py`: the platform-wide health report (the dashboard, ecm_ws's `health`
  topic, GraphQL `health`), with `metrics_summary.py` for each replica's key figures.

`Gateway` holds what the gateway ports of one process share.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar
from weakref import WeakKeyDictionary

from bem.gateway.access import TokenBuckets
from bem.gateway.platform_health import Collector

if TYPE_CHECKING:
    from bem.runtime.runtime import Runtime


class Gateway:
    """What the gateway ports of one process share, built once per process on first use:
    one set of rate-limit buckets (a client gets no second allowance on another port) and
    one platform-health collector (one memory of where services were seen, one set of rate
    baselines). Kept beside the process's Runtime, which knows nothing of gateways."""

    _by_runtime: ClassVar[WeakKeyDictionary[Runtime, Gateway]] = WeakKeyDictionary()

    def __init__(self, runtime: Runtime) -> None:
        settings = runtime.settings
        self.buckets = TokenBuckets(settings.rate_limit_rps, settings.rate_limit_burst)
        self.collector = Collector(runtime)

    @classmethod
    def of(cls, runtime: Runtime) -> Gateway:
        gateway = cls._by_runtime.get(runtime)
        if gateway is None:
            gateway = cls._by_runtime[runtime] = cls(runtime)
        return gateway
