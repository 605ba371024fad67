"""optimization's old `/process` payload: none that can be mapped, and a 422 that says why.

The old platform's ne-optimization-engine served no HTTP at all, so no old client ever got an
answer from `:5005/process`; only `tests/test_phase2_container_orchestration.py` sends it the
generic `components` payload (bem.models.legacy) it sends every service. Its components carry
no options to choose between, which is what this service does (`POST /select`), so it is a
422 naming `data.components[0].options` and the body to send instead.
"""

from __future__ import annotations

from typing import Any

from bem.errors import ValidationFailed
from bem.models.legacy import OldComponents
from bem.runtime.runtime import ServiceContext
from bem.runtime.service import OldPayload

WHY = ("optimization chooses one option per component (the body of POST /select: "
       "components[{id, options[{id, cost, scores}]}], budget, agent_coefficients); an old "
       "component has no options to choose between, and the old platform's optimization "
       "engine had no /process")


async def serve_components(_old: OldComponents, _ctx: ServiceContext, _key: str
                           ) -> dict[str, Any]:
    raise ValidationFailed(f"data.components[0].options: required: {WHY}",
                           field="data.components[0].options")


PAYLOADS = (OldPayload("components", OldComponents, serve_components),)
