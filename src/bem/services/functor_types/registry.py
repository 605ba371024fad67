"""The functor-type registry: read from YAML, checked, and re-read after CONFIG_CACHE_TTL.

`build_registry(data)` turns the parsed configuration (plain data, see
config/functor_types.yaml) into a `Registry`: one composed JSON Schema and compiled validator
per type, the feeds table and the affinity matrix. It is pure and cached by the content
digest, so a pool worker handed the same plain data builds it once. `RegistrySource` owns the
file: it re-reads it once the loaded copy is older than the TTL, and keeps serving the last
good copy (reported in health) when a re-read fails.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import orjson
import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from bem.errors import problems_message
from bem.models.graph import Callback, Phase
from bem.runtime.service import field_path

log = logging.getLogger("bem.functor_types")

SHIPPED = "config/functor_types.yaml"
PHASE_ORDER = ("alpha", "beta", "gamma")
Affinity = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


class ConfigError(Exception):
    """The registry configuration is unreadable or inconsistent; the message names where."""


# --- the file layout, checked with pydantic ---------------------------------------------------
class _TypeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phase: Phase
    callback: Callback
    description: str
    functors: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    attributes: dict[str, Any]


class _AffinityConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    domains: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    pairs: dict[str, dict[str, Affinity]]


class _RegistryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = 1
    component_schema: dict[str, Any]
    types: dict[str, _TypeConfig] = Field(min_length=1)
    feeds: dict[str, list[str]]
    affinity: _AffinityConfig


# --- the built registry -----------------------------------------------------------------------
@dataclass(frozen=True)
class FunctorType:
    name: str
    phase: str
    callback: str
    description: str
    functors: tuple[str, ...]
    attributes: dict[str, Any]
    schema: dict[str, Any]


@dataclass(frozen=True)
class Registry:
    data: dict[str, Any]  # the plain configuration it was built from (picklable to the pool)
    digest: str
    types: dict[str, FunctorType]
    validators: dict[str, Draft202012Validator]
    feeds: dict[str, tuple[str, ...]]
    domains: tuple[str, ...]
    matrix: tuple[tuple[float, ...], ...]

    def types_in(self, phase: str) -> list[FunctorType]:
        return [t for t in self.types.values() if t.phase == phase]

    def type_of_functor(self, functor: str) -> FunctorType | None:
        return next((t for t in self.types.values() if functor in t.functors), None)


def digest_of(data: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()


_BUILT: OrderedDict[str, Registry] = OrderedDict()
_BUILT_KEEP = 4  # a process sees at most a few versions of the file over its life


def build_registry(data: dict[str, Any]) -> Registry:
    """The registry of a parsed configuration; ConfigError naming the offending key."""
    digest = digest_of(data)
    registry = _BUILT.get(digest)
    if registry is None:
        registry = _build(data, digest)
        _BUILT[digest] = registry
        while len(_BUILT) > _BUILT_KEEP:
            _BUILT.popitem(last=False)
    return registry


def _build(data: dict[str, Any], digest: str) -> Registry:
    try:
        config = _RegistryConfig.model_validate(data)
    except PydanticValidationError as exc:
        raise ConfigError(problems_message([{"field": field_path(e["loc"]), "message": e["msg"]}
                                            for e in exc.errors()])) from None
    types = {name: _compose(name, t, config.component_schema)
             for name, t in config.types.items()}
    _check_functors_unique(types)
    validators = {name: Draft202012Validator(t.schema) for name, t in types.items()}
    domains, matrix = _affinity(config.affinity)
    return Registry(data=data, digest=digest, types=types, validators=validators,
                    feeds=_feeds(config.feeds, types), domains=domains, matrix=matrix)


def _compose(name: str, t: _TypeConfig, base: dict[str, Any]) -> FunctorType:
    """Base component schema AND the type's own constraints, as one draft 2020-12 schema."""
    own = {"required": ["functor"], "properties": {
        "phase": {"const": t.phase},
        "callback": {"const": t.callback},
        "functor_type": {"const": name},
        "functor": {"enum": list(t.functors)},
        "attrs": t.attributes,
    }}
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
              "title": f"component of functor type {name}", "allOf": [base, own]}
    where = f"types.{name}.attributes"
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise ConfigError(f"{where}: not a valid JSON Schema: {exc.message}") from None
    if t.attributes.get("type") != "object":
        raise ConfigError(f"{where}: must be an object schema (type: object)")
    for attr, prop in (t.attributes.get("properties") or {}).items():
        if "default" in prop and not Draft202012Validator(prop).is_valid(prop["default"]):
            raise ConfigError(f"{where}.properties.{attr}.default: does not satisfy its own "
                              f"schema")
    return FunctorType(name=name, phase=t.phase, callback=t.callback,
                       description=t.description.strip(), functors=tuple(t.functors),
                       attributes=t.attributes, schema=schema)


def _check_functors_unique(types: dict[str, FunctorType]) -> None:
    # A functor names its type when a component omits functor_type and phase.
    owner: dict[str, str] = {}
    for t in types.values():
        for functor in t.functors:
            if functor in owner:
                raise ConfigError(f"types.{t.name}.functors: {functor!r} is already listed by "
                                  f"{owner[functor]}")
            owner[functor] = t.name


def _feeds(feeds: dict[str, list[str]], types: dict[str, FunctorType]
           ) -> dict[str, tuple[str, ...]]:
    for source, targets in feeds.items():
        for i, target in enumerate((source, *targets)):
            if target not in types:
                where = f"feeds.{source}" + (f"[{i - 1}]" if i else "")
                raise ConfigError(f"{where}: unknown functor type {target!r}")
    return {name: tuple(feeds.get(name, ())) for name in types}


def _affinity(config: _AffinityConfig) -> tuple[tuple[str, ...], tuple[tuple[float, ...], ...]]:
    """Symmetric matrix with a unit diagonal from pairs given once each (either order)."""
    domains = tuple(config.domains)
    if len(set(domains)) != len(domains):
        raise ConfigError("affinity.domains: a domain is listed twice")
    index = {d: i for i, d in enumerate(domains)}
    matrix = [[1.0 if i == j else -1.0 for j in domains] for i in domains]
    for a, row in config.pairs.items():
        for b, value in row.items():
            where = f"affinity.pairs.{a}.{b}"
            if a not in index or b not in index:
                raise ConfigError(f"{where}: unknown domain (domains: {', '.join(domains)})")
            if a == b:
                raise ConfigError(f"{where}: the diagonal is 1 by definition; leave it out")
            if matrix[index[a]][index[b]] >= 0:
                raise ConfigError(f"{where}: pair given twice (each pair once, either order)")
            matrix[index[a]][index[b]] = matrix[index[b]][index[a]] = value
    missing = [f"{a}-{b}" for i, a in enumerate(domains) for b in domains[i + 1:]
               if matrix[i][index[b]] < 0]
    if missing:
        raise ConfigError(f"affinity.pairs: missing {', '.join(missing)}")
    return domains, tuple(tuple(row) for row in matrix)


# --- the file ---------------------------------------------------------------------------------
def read_config(path: Path | None) -> tuple[str, dict[str, Any]]:
    """(source label, parsed YAML) of the override file, or of the shipped one."""
    try:
        if path is None:
            source = f"package:bem.services.functor_types/{SHIPPED}"
            text = resources.files(__package__).joinpath(SHIPPED).read_text(encoding="utf-8")
        else:
            source = str(path)
            text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path or SHIPPED}: cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping")
    return source, data


def load_registry(path: Path | None) -> tuple[str, Registry]:
    source, data = read_config(path)
    try:
        return source, build_registry(data)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


class RegistrySource:
    """The current registry, re-read from its file once older than `ttl` seconds.

    The file is a few kilobytes, so re-reading it on the event loop costs well under a
    millisecond; an unchanged file hits `build_registry`'s digest cache.
    """

    def __init__(self, path: Path | None, ttl: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.ttl = ttl
        self.clock = clock
        self.source, self._registry = load_registry(path)  # a bad file stops start-up
        self.loaded_at = clock()
        self.reloads = 0
        self.last_error: str | None = None

    def get(self) -> Registry:
        now = self.clock()
        if now - self.loaded_at >= self.ttl:
            self._reload(now)
        return self._registry

    def _reload(self, now: float) -> None:
        self.loaded_at = now  # a failed read is retried after another TTL, not every request
        try:
            self.source, registry = load_registry(self.path)
        except ConfigError as exc:
            if self.last_error != str(exc):
                log.error("functor-type config not reloaded, keeping the previous one: %s", exc)
            self.last_error = str(exc)
            return
        self.last_error = None
        if registry.digest != self._registry.digest:
            log.info("functor-type config reloaded from %s", self.source)
            self.reloads += 1
        self._registry = registry

    def health(self) -> dict[str, Any]:
        registry = self._registry
        age = self.clock() - self.loaded_at
        if self.last_error:
            return {"status": "warn", "observedValue": len(registry.types),
                    "observedUnit": "types",
                    "output": f"reload failed, serving the previous config: {self.last_error}"}
        return {"status": "pass", "observedValue": len(registry.types), "observedUnit": "types",
                "output": f"{self.source}, read {age:.0f} s ago (TTL {self.ttl:g} s), "
                          f"{self.reloads} changes seen"}
