"""NGSI-LD errors: the problem details of ETSI GS CIM 009 V1.8.1, clause 6.3.2.

    NgsiLdError                 one error type of table 6.3.2-1, with its status
     raised as                  InvalidRequest (400), BadRequestData (400),
                                AlreadyExists (409), OperationNotSupported (422),
                                ResourceNotFound (404), InternalError (500),
                                TooComplexQuery (403), TooManyResults (403),
                                LdContextNotAvailable (503), NonexistentTenant (404)

Every error of a request under `/ngsi-ld/` leaves as `application/json` (the
specification's ProblemDetails, RFC 7807) with a `type` under
`https://uri.etsi.org/ngsi-ld/errors/`: the face's own errors, FastAPI's
validation errors (400 BadRequestData) and the shared `Problem`s of the API
(401 and 403 keep their status; 404 becomes ResourceNotFound, 503 keeps its
Retry-After). Other paths keep the handlers the app installed.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.errors import Problem
from storage.errors import StorageError

__all__ = ["ERRORS", "NgsiLdError", "install_error_handlers"]

_BASE = "https://uri.etsi.org/ngsi-ld/errors/"
PREFIX = "/ngsi-ld/"

# type -> (status, title), table 6.3.2-1
ERRORS: dict[str, tuple[int, str]] = {
    "InvalidRequest": (400, "The request associated to the operation is syntactically invalid or includes wrong content"),
    "BadRequestData": (400, "The request includes input data which does not meet the requirements of the operation"),
    "AlreadyExists": (409, "The referred element already exists"),
    "OperationNotSupported": (422, "The operation is not supported"),
    "ResourceNotFound": (404, "The referred resource has not been found"),
    "InternalError": (500, "There has been an error during the operation execution"),
    "TooComplexQuery": (403, "The query is too complex and cannot be resolved"),
    "TooManyResults": (403, "The query leads to too many results"),
    "LdContextNotAvailable": (503, "A remote JSON-LD @context referenced in a request cannot be retrieved"),
    "NonexistentTenant": (404, "The addressed tenant does not exist"),
}


class NgsiLdError(Exception):
    """Raise in a handler of the face: `NgsiLdError("BadRequestData", "why")`."""

    def __init__(self, kind: str, detail: str, *, headers: dict[str, str] | None = None) -> None:
        if kind not in ERRORS:
            raise ValueError(f"unknown NGSI-LD error type {kind!r}")
        super().__init__(detail)
        self.kind = kind
        self.status, self.title = ERRORS[kind]
        self.detail = detail
        self.headers = headers


def _body(type_: str, title: str, status: int, detail: str, **extra: Any) -> dict[str, Any]:
    return {"type": type_, "title": title, "status": status, "detail": detail, **extra}


def error_response(exc: NgsiLdError) -> JSONResponse:
    return JSONResponse(_body(_BASE + exc.kind, exc.title, exc.status, exc.detail),
                        status_code=exc.status, headers=exc.headers)


def _status_kind(status: int) -> str | None:
    return {400: "BadRequestData", 404: "ResourceNotFound", 409: "AlreadyExists", 422: "OperationNotSupported",
            500: "InternalError"}.get(status)


def _generic(status: int, detail: str, title: str, headers: dict[str, str] | None) -> JSONResponse:
    kind = _status_kind(status)
    if kind is None:  # 401, 403, 405, 406, 415, 503: no type of table 6.3.2-1 is meant for them
        return JSONResponse(_body("about:blank", title, status, detail), status_code=status, headers=headers)
    return error_response(NgsiLdError(kind, detail, headers=headers))


def install_error_handlers(app: FastAPI) -> None:
    """Answer errors under `/ngsi-ld/` as NGSI-LD problem details; delegate the rest."""
    previous = dict(app.exception_handlers)

    def delegate(exc_type: type[Exception], render):
        original = previous.get(exc_type)

        async def handler(request: Request, exc: Exception):
            if request.url.path.startswith(PREFIX) or original is None:
                return render(exc)
            return await original(request, exc)

        app.add_exception_handler(exc_type, handler)

    app.add_exception_handler(NgsiLdError, lambda request, exc: error_response(exc))  # type: ignore[arg-type]

    def validation(exc: RequestValidationError) -> JSONResponse:
        parts = []
        for error in exc.errors():
            loc = ".".join(str(p) for p in error.get("loc", ()))
            parts.append(f"{loc}: {error.get('msg', 'invalid')}")
        return error_response(NgsiLdError("BadRequestData", "; ".join(parts) or "invalid request"))

    def problem(exc: Problem) -> JSONResponse:
        return _generic(exc.status, exc.detail, exc.title, getattr(exc, "headers", None))

    def http(exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else "error"
        return _generic(exc.status_code, detail, detail, getattr(exc, "headers", None))

    def storage(exc: StorageError) -> JSONResponse:
        return JSONResponse(_body("about:blank", "Service Unavailable", 503, "the database is unavailable; retry later"),
                            status_code=503, headers={"Retry-After": "5"})

    delegate(RequestValidationError, validation)
    delegate(Problem, problem)
    delegate(StarletteHTTPException, http)
    delegate(StorageError, storage)
