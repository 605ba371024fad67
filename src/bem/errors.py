"""Domain errors: small exception classes, each mapped to one HTTP status in one place.

The same classes are raised by a local operation and re-raised by the service client from a
remote peer's error response, so callers handle one error type whatever the peer's location.
They are plain picklable exceptions, so a compute-pool worker can raise them too.
"""

from __future__ import annotations

from typing import Any, ClassVar


class BemError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, field: str | None = None,
                 details: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details or []
        self.headers = headers or {}

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only arguments do not survive the default pickling of exceptions.
        return (_rebuild, (type(self), self.message, self.field, self.details, self.headers))

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.field:
            body["field"] = self.field
        if self.details:
            body["details"] = self.details
        return body


def _rebuild(cls: type[BemError], message: str, field: str | None,
             details: list[dict[str, Any]], headers: dict[str, str]) -> BemError:
    return cls(message, field=field, details=details, headers=headers)


class BadRequest(BemError):
    status = 400
    code = "bad_request"


class Unauthorized(BemError):
    status = 401
    code = "unauthorized"


class NotFound(BemError):
    status = 404
    code = "not_found"


class Conflict(BemError):
    status = 409
    code = "conflict"


class PayloadTooLarge(BemError):
    status = 413
    code = "payload_too_large"


class ValidationFailed(BemError):
    status = 422
    code = "validation_error"

    @classmethod
    def naming(cls, details: list[dict[str, Any]]) -> ValidationFailed:
        """One error for many problems (`details`: `field`, `message`, `type` each): the
        message names the first LISTED_PROBLEMS, counts the rest; `field` is the first's."""
        return cls(problems_message(details) or "invalid input",
                   field=details[0]["field"] if details else None, details=details)


LISTED_PROBLEMS = 5  # problems one message names; the rest are counted, all are in details


def problems_message(details: list[dict[str, Any]]) -> str:
    """`a: why; b: why; ...; and N more`: the wording of every multi-problem error."""
    message = "; ".join(f"{d['field']}: {d['message']}" for d in details[:LISTED_PROBLEMS])
    if len(details) > LISTED_PROBLEMS:
        message += f"; and {len(details) - LISTED_PROBLEMS} more"
    return message


class RateLimited(BemError):
    status = 429
    code = "rate_limited"


class InsufficientStorage(BemError):
    status = 507
    code = "insufficient_storage"


class ServiceUnavailable(BemError):
    """A dependency (peer, pool worker, Redis) cannot serve now; retrying later may work."""

    status = 503
    code = "service_unavailable"


class UpstreamTimeout(BemError):
    status = 504
    code = "timeout"


ERROR_TYPES: dict[str, type[BemError]] = {
    cls.code: cls
    for cls in (BemError, BadRequest, Unauthorized, NotFound, Conflict, PayloadTooLarge,
                ValidationFailed, RateLimited, InsufficientStorage, ServiceUnavailable,
                UpstreamTimeout)
}


def error_from_body(status: int, body: Any) -> BemError:
    """Rebuild the error a remote peer raised from its JSON error body."""
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        cls = ERROR_TYPES.get(str(body.get("error")))
        if cls is None or cls.status != status:
            cls = next((c for c in ERROR_TYPES.values() if c.status == status), BemError)
        return cls(body["message"], field=body.get("field"), details=body.get("details") or [])
    cls = next((c for c in ERROR_TYPES.values() if c.status == status), BemError)
    return cls(f"peer answered HTTP {status}: {str(body)[:200]}")
