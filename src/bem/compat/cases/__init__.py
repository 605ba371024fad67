"""The recorded requests of the old clients, one module per old interface.

Each module here defines `CASES`, a list of `bem.compat.catalogue.Case`; `all_cases()`
collects every module's, so a new interface is one new module.
"""

from __future__ import annotations

import importlib
import pkgutil

from bem.compat.catalogue import Case


def all_cases() -> list[Case]:
    cases: list[Case] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        cases.extend(importlib.import_module(f"{__name__}.{info.name}").CASES)
    return cases
