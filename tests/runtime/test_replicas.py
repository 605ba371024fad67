"""The replica loop's rules, table-driven: what each attempt's result means, whether the
replica is ejected, whether another replica is tried, and the error the caller gets. No
server is needed: the results are the values and exceptions the transport produces. (The
loop over real replicas is tested in tests/runtime/test_client.py and
tests/services/graphql/test_replicas.py.)"""

from __future__ import annotations

import pytest

from bem.errors import ServiceUnavailable, UpstreamTimeout
from bem.runtime.replicas import RULES, Outcome, classify, failure, should_retry
from bem.runtime.upstream import Answer, Broken, NotSent


def answer(status: int) -> Answer:
    return Answer(None, status, [(b"content-type", b"application/json")], b"{}")


# result of one attempt -> outcome, ejected?, retried when idempotent?, when not?, error
TABLE = [
    (answer(200), Outcome.ANSWERED, False, False, False, None),
    (answer(404), Outcome.ANSWERED, False, False, False, None),
    (answer(422), Outcome.ANSWERED, False, False, False, None),
    (answer(500), Outcome.ANSWERED, False, False, False, None),  # a bug there, not overload
    (answer(502), Outcome.REFUSED, False, True, False, None),
    (answer(503), Outcome.REFUSED, False, True, False, None),
    (answer(504), Outcome.REFUSED, False, True, False, None),
    (NotSent("Connection refused"), Outcome.NOT_SENT, True, True, True, ServiceUnavailable),
    (NotSent("connect timed out after 2 s"), Outcome.NOT_SENT, True, True, True,
     ServiceUnavailable),
    (TimeoutError(), Outcome.TIMEOUT, True, True, False, UpstreamTimeout),
    (Broken("connection closed before the answer was complete"), Outcome.BROKEN, True, True,
     False, ServiceUnavailable),
    (ConnectionResetError(104, "Connection reset by peer"), Outcome.BROKEN, True, True, False,
     ServiceUnavailable),
]


@pytest.mark.parametrize(("result", "outcome", "ejected", "retried", "retried_always",
                          "error"), TABLE, ids=lambda v: repr(v)[:40])
def test_each_result_is_classified_and_acted_on(
        result: Answer | BaseException, outcome: Outcome, ejected: bool, retried: bool,
        retried_always: bool, error: type[Exception] | None) -> None:
    assert classify(result) is outcome
    assert RULES[outcome].eject is ejected
    assert should_retry(outcome, idempotent=True) is retried
    assert should_retry(outcome, idempotent=False) is retried_always
    if error is not None:
        err = failure(outcome, "sfde", "http://10.0.0.2:5003", "get_formula", 30.0, str(result))
        assert type(err) is error
        assert "sfde" in err.message and "http://10.0.0.2:5003" in err.message
        assert "get_formula" in err.message


def test_errors_of_one_vocabulary() -> None:
    timeout = failure(Outcome.TIMEOUT, "sfde", "in this process", "evaluate", 2.5, "")
    assert (timeout.status, timeout.code) == (504, "timeout")
    assert timeout.message == ("sfde (in this process) did not answer evaluate within 2.5 s "
                               "(REQUEST_TIMEOUT)")
    refused = failure(Outcome.NOT_SENT, "sfde", "http://h:1", "evaluate", 2.5, "refused")
    assert (refused.status, refused.headers) == (503, {"Retry-After": "1"})
    assert refused.message.startswith("sfde is unavailable: no connection to http://h:1")
    broken = failure(Outcome.BROKEN, "sfde", "http://h:1", "POST /evaluate", 2.5, "reset")
    assert "connection failed" in broken.message and "POST /evaluate" in broken.message


def test_anything_else_is_a_bug_not_a_transport_outcome() -> None:
    with pytest.raises(KeyError):
        classify(KeyError("x"))
