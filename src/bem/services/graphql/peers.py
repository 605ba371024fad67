"""The services the resolvers call, by reference, each imported on its first call.

`peers.sfde.evaluate` is sfde's operation itself: type checkers and editors follow it through
the imports below. At run time a service's API module is imported when a resolver first
reaches it, not when the schema is built: a gateway process whose backends run elsewhere
would otherwise pay every service's imports (~0.35 s of CPU, measured) before it is ready.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bem.services.callback_engine import api as callback_engine
    from bem.services.dag_alpha import api as dag_alpha
    from bem.services.dashboard import api as dashboard
    from bem.services.functor_types import api as functor_types
    from bem.services.graph_runtime import api as graph_runtime
    from bem.services.optimization import api as optimization
    from bem.services.sfde import api as sfde

__all__ = ["callback_engine", "dag_alpha", "dashboard", "functor_types", "graph_runtime",
           "optimization", "sfde"]


def __getattr__(name: str) -> ModuleType:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"bem.services.{name}.api")
    globals()[name] = module  # the next access is a plain attribute lookup
    return module
