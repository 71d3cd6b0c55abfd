"""Errors of the api package and their RFC 9457 problem-details rendering.

    ApiError                    root
     ├── ConfigurationError     the app cannot be built from these settings
     └── Problem                an HTTP problem to answer with (status, title, detail)

The broker's `BrokerSecurityError` (dynamic security unreachable or refusing)
leaves as a 503 problem.

Every 4xx/5xx leaves as `application/problem+json` with `type`, `title`,
`status` and `detail`: FastAPI's request validation errors (422, with an
`errors` list naming each bad parameter; 400 when only the `cursor` is bad), Starlette's HTTP errors (404 for an
unknown path, 405, ...), `Problem`, and storage errors (503, details logged,
not sent). Anything else is a 500 problem, logged with its traceback.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from citylab.broker_security import BrokerSecurityError
from storage.errors import DatabaseUnavailable, StorageError

__all__ = ["PROBLEM_JSON", "ApiError", "ConfigurationError", "Problem", "install_problem_handlers", "problem_response"]

logger = logging.getLogger("citylab.api")

PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_S = 5


class ApiError(Exception):
    pass


class ConfigurationError(ApiError):
    pass


class Problem(ApiError):
    """Raise in a handler to answer with a problem document."""

    def __init__(self, status: int, detail: str, *, title: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase


def problem_response(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        **extensions,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _location(loc: tuple[Any, ...] | list[Any]) -> tuple[str, str]:
    """("query", "start") from FastAPI's ("query", "start") / ("path", "series_id") / ("body", ...)."""
    if not loc:
        return "request", ""
    where = str(loc[0])
    return where, ".".join(str(part) for part in loc[1:])


async def _on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = []
    for error in exc.errors():
        where, name = _location(error.get("loc", ()))
        message = str(error.get("msg", "invalid"))
        errors.append({"in": where, "name": name, "message": message})
    detail = "; ".join(f"{e['in']} parameter '{e['name']}': {e['message']}" for e in errors) or "invalid request"
    if errors and all((e["in"], e["name"]) == ("query", "cursor") for e in errors):
        # a cursor is the API's own token, not a parameter to get right: one it did not give out is a 400
        return problem_response(400, f"cursor is not one this API gave out ({errors[0]['message']})",
                                title="Invalid cursor", errors=errors)
    return problem_response(422, detail, title="Invalid request", errors=errors)


async def _on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).description
    return problem_response(exc.status_code, detail, headers=getattr(exc, "headers", None))


async def _on_problem(request: Request, exc: Problem) -> JSONResponse:
    return problem_response(exc.status, exc.detail, title=exc.title, headers=getattr(exc, "headers", None))


async def _on_broker_error(request: Request, exc: Exception) -> JSONResponse:
    logger.error("%s %s: broker security: %s", request.method, request.url.path, exc)
    return problem_response(503, f"the broker could not apply the change; retry later ({exc})",
                            headers={"Retry-After": str(RETRY_AFTER_S)})


async def _on_storage_error(request: Request, exc: StorageError) -> JSONResponse:
    if isinstance(exc, DatabaseUnavailable):
        logger.warning("%s %s: %s", request.method, request.url.path, exc)
        detail = "the database is unavailable; retry later"
    else:
        logger.error("%s %s: storage error (SQLSTATE %s): %s", request.method, request.url.path, exc.sqlstate, exc)
        detail = "the database could not answer this request; retry later"
    return problem_response(503, detail, headers={"Retry-After": str(RETRY_AFTER_S)})


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("%s %s: unexpected error", request.method, request.url.path)
    return problem_response(500, "an unexpected error occurred; it has been logged")


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _on_validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _on_http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Problem, _on_problem)  # type: ignore[arg-type]
    app.add_exception_handler(StorageError, _on_storage_error)  # type: ignore[arg-type]
    app.add_exception_handler(BrokerSecurityError, _on_broker_error)
    app.add_exception_handler(Exception, _on_unexpected)
