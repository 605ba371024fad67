"""The soak (tests/faults/soak.py): zero errors, and no process holds memory per request.

The default run is the reduced soak: a small working set, so that the warm-up (measured in
requests) is short on any machine, then BEM_SOAK_SECONDS (default 20) of measured load,
judged by what 20 seconds can show: growth beyond what the bounded structures explain.
`pytest -m soak tests/faults/test_soak.py` runs the full one (working set of 200, 10
minutes, levelling off judged too), as does `python -m tests.faults.soak --duration 600`.

`test_injected_leak_is_caught` proves the detector detects: a cluster process given a real
leak (memory held per request, beyond every bound) fails the same verdict.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from tests.faults.soak import describe, run

pytestmark = pytest.mark.slow

REDUCED_S = float(os.environ.get("BEM_SOAK_SECONDS", "20"))
REDUCED_WORKING_SET = 30
FULL_S = 600.0
LEAK_BYTES = 128 * 1024  # caught at any plausible speed: 100 compute requests hold 12.5 MB

# Runs in the compute cluster process only (sitecustomize is imported at interpreter start):
# every HTTP request the process serves keeps LEAK_BYTES of fresh (touched) memory forever.
LEAK = textwrap.dedent("""
    import os, sys

    if sys.argv[1:] == ["serve", "compute"]:
        from bem.runtime import metrics

        HELD = []
        SIZE = int(os.environ["BEM_TEST_LEAK_BYTES"])
        serve = metrics.MetricsMiddleware.__call__

        async def leaking(self, scope, receive, send):
            if scope["type"] == "http":
                HELD.append(os.urandom(SIZE))
            await serve(self, scope, receive, send)

        metrics.MetricsMiddleware.__call__ = leaking
""")


def check(result: dict[str, object], *, levels_off: bool) -> None:
    print("\n" + describe(result))  # type: ignore[arg-type]
    assert result["errors"] == 0, result["error_examples"]
    assert result["measured_requests"] > 0 and result["events_acknowledged"] > 0
    assert result["bounded"], describe(result)  # type: ignore[arg-type]
    if levels_off:
        assert result["levels_off"], describe(result)  # type: ignore[arg-type]


def test_reduced_soak() -> None:
    check(run(REDUCED_S, every=1.0, working_set=REDUCED_WORKING_SET), levels_off=False)


def test_injected_leak_is_caught(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(LEAK)
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p)
    result = run(10.0, every=1.0, working_set=REDUCED_WORKING_SET, pythonpath=path,
                 bem_test_leak_bytes=LEAK_BYTES)
    print("\n" + describe(result))
    assert result["errors"] == 0, result["error_examples"]
    assert not result["bounded"]
    memory = result["memory"]
    assert not memory["compute"]["bounded"], memory["compute"]
    assert all(m["bounded"] for role, m in memory.items() if role != "compute"), memory


@pytest.mark.soak
@pytest.mark.timeout(FULL_S + 480)
def test_full_soak() -> None:
    check(run(FULL_S, every=5.0), levels_off=True)
