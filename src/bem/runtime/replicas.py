"""The replica loop: one request to a service, wherever its replicas are.

Used by the service client (`ctx.call` to a peer in another process) and by the gateway's
REST routing alike, so both follow the same rules and speak the same errors:

1. pick a replica (round-robin over the registry, ejected ones skipped: `Balancer`);
2. send the request over a pooled connection (`Upstream`), within REQUEST_TIMEOUT;
3. classify what happened (`classify`) and act on it as `RULES` say: pass the answer on,
   eject the replica for a while, and try once more on another replica when that is safe:
   always when the request never reached the replica, otherwise only when the request is
   idempotent.

An answer of 502/503/504 is retried (when idempotent) but is not the replica's fault at the
transport level, so it is not ejected; when no other replica can take it, that answer itself
is passed on. A failure with no answer at all becomes one of two errors, 503 (with
Retry-After) or 504, whose message names the service, the replica and what was asked.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from bem.errors import BemError, ServiceUnavailable, UpstreamTimeout
from bem.runtime.registry import Balancer
from bem.runtime.upstream import Answer, Broken, Headers, NotSent, Upstream

if TYPE_CHECKING:
    from bem.runtime.deadlines import Deadlines
    from bem.runtime.otel import Tracing

RETRY_STATUSES = frozenset({502, 503, 504})
ATTEMPTS = 2  # the first try and one retry on another replica


class Outcome(enum.Enum):
    ANSWERED = "answered"  # a final answer, whatever its status: pass it on
    REFUSED = "refused"  # 502/503/504 from the replica: it may be overloaded or stopping
    NOT_SENT = "not_sent"  # no connection: the replica never saw the request
    TIMEOUT = "timeout"  # no answer within REQUEST_TIMEOUT
    BROKEN = "broken"  # the connection failed once the request was written


@dataclass(frozen=True)
class Rule:
    eject: bool  # take the replica out of the rotation for a while
    retry: bool  # try another replica whatever the request
    retry_idempotent: bool  # try another replica when the request is idempotent


RULES: dict[Outcome, Rule] = {
    Outcome.ANSWERED: Rule(eject=False, retry=False, retry_idempotent=False),
    Outcome.REFUSED: Rule(eject=False, retry=False, retry_idempotent=True),
    Outcome.NOT_SENT: Rule(eject=True, retry=True, retry_idempotent=True),
    Outcome.TIMEOUT: Rule(eject=True, retry=False, retry_idempotent=True),
    Outcome.BROKEN: Rule(eject=True, retry=False, retry_idempotent=True),
}


def classify(result: Answer | BaseException) -> Outcome:
    """What one attempt's result (an answer or the exception it raised) means."""
    if isinstance(result, Answer):
        return Outcome.REFUSED if result.status in RETRY_STATUSES else Outcome.ANSWERED
    if isinstance(result, NotSent):
        return Outcome.NOT_SENT
    if isinstance(result, TimeoutError):
        return Outcome.TIMEOUT
    if isinstance(result, Broken | OSError):
        return Outcome.BROKEN
    raise result  # not a transport outcome: a bug to surface, never to retry


def should_retry(outcome: Outcome, idempotent: bool) -> bool:
    rule = RULES[outcome]
    return rule.retry or (idempotent and rule.retry_idempotent)


def failure(outcome: Outcome, service: str, base: str, what: str, timeout: float,
            detail: str) -> BemError:
    """The one error vocabulary of a request that got no answer (`base`: the replica's
    address, or where the operation ran)."""
    if outcome is Outcome.TIMEOUT:
        return UpstreamTimeout(f"{service} ({base}) did not answer {what} within "
                               f"{timeout:g} s (REQUEST_TIMEOUT)")
    reason = "no connection" if outcome is Outcome.NOT_SENT else "connection failed"
    return ServiceUnavailable(f"{service} is unavailable: {reason} to {base} during {what} "
                              f"({detail})", headers={"Retry-After": "1"})


@dataclass(frozen=True)
class Request:
    """One request to a service: what is sent to whichever replica takes it."""

    service: str
    method: bytes
    target: bytes  # path and query, percent-encoded
    headers: Headers
    body: bytes
    idempotent: bool
    what: str  # for messages: the operation, or the method and path


class Replicas:
    """Sends requests to the replicas of services (one per process, owned by the client)."""

    def __init__(self, balancer: Balancer, upstream: Upstream, timeout: float,
                 deadlines: Deadlines) -> None:
        self.balancer = balancer
        self.upstream = upstream
        self.timeout = timeout
        self.deadlines = deadlines
        self.tracing: Tracing | None = None  # set by the runtime when tracing is on

    async def send(self, request: Request, buffer_limit: int | None = None) -> Answer:
        """The answer of a replica (the caller releases it), or the BemError of RULES.

        Answers up to `buffer_limit` bytes are read whole (so that a replica dying mid-answer
        is retried); None reads every answer whole.
        """
        if self.tracing is not None:  # the current span's context, not what a client sent
            request = replace(request, headers=self.tracing.headers(request.headers))
        tried: list[str] = []
        last: Answer | None = None
        error: BemError | None = None
        for _ in range(ATTEMPTS):
            base = await self.balancer.pick(request.service, exclude=tried)
            if base in tried:
                break  # no other replica to try
            tried.append(base)
            result = await self._attempt(base, request, buffer_limit)
            outcome = classify(result)
            if outcome is Outcome.ANSWERED:
                assert isinstance(result, Answer)
                if last is not None:
                    last.release()
                return result
            if RULES[outcome].eject:
                self.balancer.eject(base, f"{outcome.value}: {result}")
            if isinstance(result, Answer):
                if last is not None:
                    last.release()
                last, error = result, None
            else:
                error = failure(outcome, request.service, base, request.what, self.timeout,
                                str(result) or type(result).__name__)
            if not should_retry(outcome, request.idempotent):
                break
        if last is not None:
            return last
        raise error or ServiceUnavailable(f"{request.service} is unavailable: no replica "
                                          f"is known", headers={"Retry-After": "1"})

    async def _attempt(self, base: str, request: Request, buffer_limit: int | None
                       ) -> Answer | BaseException:
        try:
            async with self.deadlines.limit(self.timeout):
                return await self.upstream.request(base, request.method, request.target,
                                                   request.headers, request.body,
                                                   buffer_limit=buffer_limit)
        except (NotSent, Broken, TimeoutError, OSError) as exc:
            return exc
