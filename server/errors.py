"""OpenAI-shaped errors: every failure the server returns is `{"error": {message, type, param, code}}`.

`APIError` is what routes raise; `install_error_handlers` maps it, FastAPI's validation errors, Starlette's
HTTP errors (404 route, 405 method) and anything unexpected onto that one body, as vLLM's api_server
does. Bad input is always a 4xx; a 500 only means a bug or a broken engine.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from l2s.config import validation_message
from l2s.server.schemas import ErrorInfo, ErrorResponse

log = logging.getLogger("l2s.server")

# HTTP status -> OpenAI error type (as the OpenAI API names them).
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable_error",
}


class APIError(Exception):
    """An error to answer with an OpenAI-shaped body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict:
    """The OpenAI error body for `status`.

    >>> error_body(404, "The model 'gpt-4' does not exist", param="model", code="model_not_found")
    {'error': {'message': "The model 'gpt-4' does not exist", 'type': 'not_found_error', 'param': 'model', 'code': 'model_not_found'}}
    """
    kind = ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return ErrorResponse(error=ErrorInfo(message=message, type=kind, param=param, code=code)).model_dump()


def error_response(
    status: int, message: str, param: str | None = None, code: str | None = None, headers=None
) -> JSONResponse:
    return JSONResponse(error_body(status, message, param, code), status_code=status, headers=headers)


def describe_validation(errors: list[dict[str, Any]]) -> tuple[int, str, str | None]:
    """(status, message, param) for pydantic/FastAPI validation errors: 400 for unparseable JSON, else 422.

    >>> describe_validation([{"type": "json_invalid", "loc": ("body", 12), "msg": "JSON decode error"}])
    (400, 'request body is not valid JSON (JSON decode error at position 12)', None)
    >>> describe_validation([{"type": "greater_than_equal", "loc": ("body", "max_tokens"),
    ...                       "msg": "Input should be greater than or equal to 1"}])
    (422, 'max_tokens: Input should be greater than or equal to 1', 'max_tokens')
    """
    first = errors[0]
    loc = [str(x) for x in first.get("loc", ()) if x != "body"]
    if first.get("type") == "json_invalid":
        where = f" at position {loc[0]}" if loc else ""
        return 400, f"request body is not valid JSON ({first.get('msg', 'decode error')}{where})", None
    if first.get("type") == "missing" and not loc:
        return 400, "request body is missing; send a JSON object", None
    param = ".".join(loc) or None
    msg = validation_message(first)
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return 422, f"{param}: {msg}{more}" if param else f"{msg}{more}", param


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.param, exc.code, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, message, param = describe_validation(list(exc.errors()))
        return error_response(status, message, param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404:
            message = f"no route {request.method} {request.url.path}; see GET /v1/models and the OpenAI API"
        return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error_response(500, f"internal server error: {type(exc).__name__}")
