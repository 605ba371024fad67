"""All configuration, read once at start-up from the environment and validated.

Names follow the operations guide (WORKERS, CACHE_SIZE, NUMPY_THREADS, ...). The resulting
`Settings` object is passed down explicitly; nothing else in the package reads the environment.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    FilePath,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_byte_size(value: object) -> int:
    """`1024MB`, `512m`, `2GiB` or a plain number of bytes -> bytes (binary multiples)."""
    if isinstance(value, int):
        return value
    match = _SIZE_RE.match(str(value))
    if not match:
        raise ValueError(f"not a size: {value!r} (examples: 1024MB, 512m, 2GiB, 1048576)")
    number, unit = match.groups()
    return int(float(number) * _SIZE_UNITS[(unit or "").lower()[:1]])


def _non_negative(value: int) -> int:
    if value < 0:
        raise ValueError("must be >= 0")
    return value


ByteSize = Annotated[int, BeforeValidator(parse_byte_size), AfterValidator(_non_negative)]
Port = Annotated[int, Field(ge=0, le=65535)]


class Settings(BaseSettings):
    """Validated configuration of one cluster process (or of the `bem up` launcher)."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True,
                                      populate_by_name=True)

    # --- tuning variables of the operations guide --------------------------------------------
    workers: int = Field(2, ge=0, le=64, description="compute pool processes (0 = run inline)")
    cache_size: ByteSize = Field(parse_byte_size("256MB"), description="L1 cache bound in bytes")
    numpy_threads: int = Field(1, ge=1, le=64, description="BLAS threads per pool worker")
    connection_pool_size: int = Field(20, ge=1, le=1000, description="HTTP connections per peer")
    callback_batch_size: int = Field(10, ge=1, le=10_000, description="events per processing batch")
    callback_max_attempts: int = Field(
        3, ge=1, le=100, description="processing attempts before an event is parked as failed")
    callback_retention: float = Field(
        86_400.0, ge=1, description="seconds a finished event's record and idempotency "
                                    "key are kept (a key resent later is a new event)")
    config_cache_ttl: float = Field(300.0, ge=0, description="functor-type config TTL, seconds")
    functor_types_path: FilePath | None = Field(
        None, description="YAML file replacing the shipped functor-type registry (reloaded "
                          "every CONFIG_CACHE_TTL seconds)")

    # --- placement and discovery ---------------------------------------------------------------
    node_role: str = Field("single", description="cluster name this process serves")
    redis_url: str | None = Field(None, description="unset = embedded mode (no Redis)")
    bind_host: str = Field("0.0.0.0", description="interface for gateway ports")
    backend_bind_host: str | None = Field(
        None, description="interface for backend service ports (default: BIND_HOST)"
    )
    advertise_host: str = Field(
        "127.0.0.1", description="address peers use to reach this process; 'auto' = primary IP"
    )
    backend_host: str = Field("127.0.0.1", description="default host of remote peers")
    backend_compute_url: str | None = Field(
        None, description="scheme://host of the compute cluster (each service on its own port)")
    backend_logic_url: str | None = Field(None, description="scheme://host of the logic cluster")
    backend_gateway_url: str | None = Field(None,
                                            description="scheme://host of the gateway cluster")
    data_dir: str | None = Field(
        None, description="shared data volume directory, saved by `bem backup`; unset = none"
    )

    # --- service ports -------------------------------------------------------------------------
    dag_alpha_port: Port = Field(5000, description="dag_alpha port (0 = ephemeral)")
    functor_types_port: Port = Field(5001, description="functor_types port (0 = ephemeral)")
    callback_engine_port: Port = Field(5002, description="callback_engine port (0 = ephemeral)")
    sfde_port: Port = Field(5003, description="sfde port (0 = ephemeral)")
    graph_runtime_port: Port = Field(5004, description="graph_runtime port (0 = ephemeral)")
    optimization_port: Port = Field(5005, description="optimization port (0 = ephemeral)")
    graphql_port: Port = Field(8000, description="graphql port (0 = ephemeral)")
    ecm_ws_port: Port = Field(8765, description="ecm_ws port (0 = ephemeral)")
    dashboard_port: Port = Field(8080, description="dashboard port (0 = ephemeral)")

    # --- lifecycle -----------------------------------------------------------------------------
    grace_period: float = Field(10.0, ge=0, le=600, description="drain time on shutdown, seconds")
    registry_ttl: float = Field(6.0, ge=1, description="replica heartbeat TTL, seconds")
    request_timeout: float = Field(
        30.0, gt=0, description="per-hop timeout of calls to a service, remote or in-process")
    task_timeout: float = Field(60.0, gt=0, description="time limit of one pool task, seconds")
    inline_budget_ms: float = Field(
        2.0, ge=0, description="estimated CPU time from which a job goes to the pool, ms "
                               "(below it, it runs on the event loop; 0 = always the pool)")
    cache_ttl: int = Field(86_400, ge=1, description="TTL of cached results in Redis, seconds")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="debug | info | warning | error")
    log_format: Literal["text", "json"] = Field(
        "text", description="text | json (one JSON object a line, with trace and span ids)")

    # --- tracing (OpenTelemetry's standard variables; runtime/tracing.py) --------------------
    otel_exporter_otlp_endpoint: str | None = Field(
        None, description="OTLP/HTTP collector base URL (traces go to <it>/v1/traces); "
                          "setting it turns tracing on")
    otel_exporter_otlp_traces_endpoint: str | None = Field(
        None, description="OTLP/HTTP traces URL, used as is; setting it turns tracing on")
    otel_exporter_otlp_protocol: Literal["http/protobuf"] | None = Field(
        None, description="only http/protobuf is supported")
    otel_traces_exporter: Literal["otlp", "console", "none"] | None = Field(
        None, description="otlp | console | none (none: off even with an endpoint)")
    otel_traces_sampler: Literal[
        "always_on", "always_off", "traceidratio", "parentbased_always_on",
        "parentbased_always_off", "parentbased_traceidratio"] = Field(
        "parentbased_always_on", description="OpenTelemetry sampler name")
    otel_traces_sampler_arg: float | None = Field(
        None, ge=0, le=1, description="ratio of the traceidratio samplers (default 1.0)")
    otel_service_name: str | None = Field(
        None, description="service.name of every span of the process (default: each "
                          "member service is its own)")

    # --- limits --------------------------------------------------------------------------------
    max_body_size: ByteSize = Field(parse_byte_size("10MB"), description="request body limit")
    max_graph_nodes: int = Field(50_000, ge=1, description="nodes per graph (413 above)")
    max_graph_edges: int = Field(200_000, ge=1, description="edges per graph (413 above)")
    max_stored_graphs: int = Field(10_000, ge=1, description="embedded graph store capacity")
    max_expression_length: int = Field(2_000, ge=1,
                                       description="characters of a safe expression")
    max_columns_rows: int = Field(1_000_000, ge=1, description="rows of a vectorised evaluation")
    max_ws_message_size: ByteSize = Field(parse_byte_size("1MB"),
                                          description="WebSocket message limit")

    # --- gateway -------------------------------------------------------------------------------
    rate_limit_rps: float = Field(200.0, gt=0, description="token refill per client, per second")
    rate_limit_burst: int = Field(400, ge=1, description="token bucket size per client")
    api_keys: str = Field("", alias="BEM_API_KEYS", description="comma-separated; empty = open")
    header_timeout: float = Field(
        5.0, gt=0, le=300,
        description="seconds a connection may take to send a request's headers (every port)")
    max_client_connections: int = Field(
        256, ge=1, description="open connections per client address on the gateway ports")

    @field_validator("redis_url", "backend_compute_url", "backend_logic_url",
                     "backend_gateway_url", "data_dir", "functor_types_path",
                     "otel_exporter_otlp_endpoint", "otel_exporter_otlp_traces_endpoint",
                     "otel_exporter_otlp_protocol", "otel_traces_exporter",
                     "otel_traces_sampler_arg", "otel_service_name", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    def port_of(self, service: str) -> int:
        return int(getattr(self, f"{service}_port"))

    def host_for(self, service: str, gateway: bool) -> str:
        """Interface a service binds: backends may be kept on an internal interface."""
        if gateway:
            return self.bind_host
        return self.backend_bind_host or self.bind_host

    @property
    def tracing(self) -> bool:
        """Tracing is on when an endpoint is set or OTEL_TRACES_EXPORTER names an exporter."""
        if self.otel_traces_exporter is not None:
            return self.otel_traces_exporter != "none"
        return bool(self.otel_exporter_otlp_endpoint or self.otel_exporter_otlp_traces_endpoint)

    @property
    def api_key_set(self) -> frozenset[str]:
        return frozenset(k.strip() for k in self.api_keys.split(",") if k.strip())


class SettingsError(Exception):
    """A setting failed validation; the message names the environment variable."""


def load_settings(**overrides: object) -> Settings:
    """Read the environment once. Raises SettingsError naming each bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = str(err["loc"][0]).upper() if err["loc"] else "?"
            raw = os.environ.get(name, os.environ.get(name.lower()))
            shown = f" (got {raw!r})" if raw is not None else ""
            lines.append(f"invalid setting {name}{shown}: {err['msg']}")
        raise SettingsError("\n".join(lines)) from None
