"""Plain-data conversions between GraphQL values and the services' models."""

from __future__ import annotations

from typing import Any

import strawberry
from pydantic import BaseModel
from pydantic_core import to_jsonable_python


def jsonable(value: Any, *, exclude_none: bool = False) -> Any:
    """A service's answer (pydantic model or plain data) as plain JSON data."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_none=exclude_none)
    return to_jsonable_python(value, exclude_none=exclude_none)


def without_unset(value: Any) -> Any:
    """An input object as plain data, leaving out the fields the client did not give (so
    the service's own defaults apply)."""
    if isinstance(value, list):
        return [without_unset(v) for v in value]
    fields = getattr(value, "__dataclass_fields__", None)
    if fields is None:
        return value
    return {name: without_unset(getattr(value, name)) for name in fields
            if getattr(value, name) is not strawberry.UNSET}


def pick(cls: Any, data: dict[str, Any] | None) -> Any:
    """A GraphQL object from a service's answer: its known fields (absent ones null, new
    ones left to the JSON views), or None for no data."""
    if data is None:
        return None
    return cls(**{name: data.get(name) for name in cls.__dataclass_fields__})
