"""The soak (tests/faults/soak.py): zero errors, and the memory of every process levels off.

The default run is the reduced soak (BEM_SOAK_SECONDS, default 20 s, a few thousand requests);
`pytest -m soak tests/faults/test_soak.py` runs the full one (10 minutes), as does
`python -m tests.faults.soak --duration 600`.
"""

from __future__ import annotations

import os

import pytest

from tests.faults.soak import describe, run

pytestmark = pytest.mark.slow

REDUCED_S = float(os.environ.get("BEM_SOAK_SECONDS", "20"))
FULL_S = 600.0


def check(duration: float, every: float) -> None:
    result = run(duration, every)
    print("\n" + describe(result))
    assert result["errors"] == 0, result["error_examples"]
    assert result["requests"] > 0 and result["events_acknowledged"] > 0
    assert result["levels_off"], describe(result)


def test_reduced_soak() -> None:
    check(REDUCED_S, every=1.0)


@pytest.mark.soak
@pytest.mark.timeout(FULL_S + 180)
def test_full_soak() -> None:
    check(FULL_S, every=5.0)
