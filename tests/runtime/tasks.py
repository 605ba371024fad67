"""Functions run in pool workers by the tests (importable by the forkserver)."""

from __future__ import annotations

import os
import time

from bem.errors import ValidationFailed


def square(x: int) -> int:
    return x * x


def pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def blas_threads() -> list[int]:
    import numpy  # noqa: F401  (loads the BLAS library threadpoolctl inspects)
    from threadpoolctl import threadpool_info

    return [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]


def invalid() -> None:
    raise ValidationFailed("x: must be positive", field="x")


def die() -> None:
    os._exit(17)


def exit_at_once(_conn: object, _threads: int) -> None:
    """A worker main that dies before serving anything (a broken worker environment)."""
    os._exit(3)
