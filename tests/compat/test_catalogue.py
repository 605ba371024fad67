"""The catalogue's reads: what an old client reads from an answer, checked exactly."""

from __future__ import annotations

import pytest

from bem.compat.catalogue import Read, resolve

ANSWER = {"status": "success", "results": {"manufacturing_score": 0.82, "count": 3,
                                           "ok": True, "nodes": [{"id": "V01"}, {"id": "V02"}],
                                           "empty": [], "none": None}}


def test_resolve_paths_and_wildcards() -> None:
    assert list(resolve(ANSWER, "status")) == [("status", "success")]
    assert list(resolve(ANSWER, "results.nodes[1].id")) == [("results.nodes[1].id", "V02")]
    assert [v for _, v in resolve(ANSWER, "results.nodes[*].id")] == ["V01", "V02"]
    assert list(resolve(ANSWER, "")) == [("", ANSWER)]


@pytest.mark.parametrize(("path", "why"), [
    ("results.missing", "no field 'missing' in results"),
    ("results.nodes[5].id", "results.nodes[5] does not exist (2 elements)"),
    ("results.empty[*].id", "results.empty is an empty array"),
    ("status[0]", "status is not an array"),
    ("results.count.x", "no field 'x' in results.count"),
])
def test_missing_parts_are_named(path: str, why: str) -> None:
    with pytest.raises(LookupError, match=why.replace("[", r"\[").replace("(", r"\(")
                       .replace(")", r"\)")):
        list(resolve(ANSWER, path))


@pytest.mark.parametrize(("read", "failure"), [
    (Read("status", equals="success"), None),
    (Read("status", equals="completed"), "status: expected 'completed', got 'success'"),
    (Read("results.manufacturing_score", float), None),
    (Read("results.count", float), None),  # JSON has one number type
    (Read("results.count", int), None),
    (Read("results.manufacturing_score", int), "expected integer, got number 0.82"),
    (Read("results.ok", int), "expected integer, got boolean True"),  # never a number
    (Read("results.ok", bool), None),
    (Read("results.none", (str, type(None))), None),
    (Read("results.nodes[*].id", str), None),
    (Read("results.nodes", dict), "expected object, got array"),
    (Read("results.gone"), "results.gone: no field 'gone' in results"),
    (Read("errors", absent=True), None),
    (Read("results.count", absent=True), "results.count: present, the old client expects "
                                         "none (3)"),
])
def test_read_check(read: Read, failure: str | None) -> None:
    result = read.check(ANSWER)
    if failure is None:
        assert result is None
    else:
        assert result is not None and failure in result
