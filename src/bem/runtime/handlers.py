"""One error shape (`ErrorBody`) for every 4xx/5xx a service port answers."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from bem.errors import BemError
from bem.runtime.service import validation_failed

log = logging.getLogger("bem.app")


def json_response(body: Any, status: int, headers: Mapping[str, str] | None = None
                  ) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json",
                    headers=headers)


def error_response(exc: BemError) -> Response:
    return json_response(exc.to_body(), exc.status, exc.headers or None)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(BemError)
    async def _bem_error(_request: Request, exc: BemError) -> Response:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> Response:
        errors = list(exc.errors())
        if errors and errors[0].get("type") == "json_invalid":
            ctx = errors[0].get("ctx") or {}
            message = f"malformed JSON body: {ctx.get('error', 'cannot be parsed')}"
            return json_response({"error": "bad_request", "message": message,
                                  "field": "body"}, 400)
        return error_response(validation_failed(errors))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        return json_response({"error": codes.get(exc.status_code, "http_error"),
                              "message": str(exc.detail)}, exc.status_code, exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return json_response({"error": "internal_error",
                              "message": f"internal error ({type(exc).__name__}); "
                                         f"see the service log"}, 500)
