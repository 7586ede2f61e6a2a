"""Domain errors and the one place that maps them (and framework errors) to HTTP.

Every error the API reports on purpose is a ``BitseekError`` carrying its HTTP status; each
subclass's docstring says when it is raised.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from training.rejection import ItemRejected

log = logging.getLogger(__name__)


class BitseekError(Exception):
    status = 400

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": type(self).__name__, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        return {"error": error}


class NotFound(BitseekError):
    """404: an unknown collection, item, job or model version."""

    status = 404


class Conflict(BitseekError):
    """409: the collection exists, a job already runs, the collection has no model yet."""

    status = 409


class InvalidInput(BitseekError):
    """422: a field is malformed (wrong modality, bad image, wrong code width, ...)."""

    status = 422


class PayloadTooLarge(BitseekError):
    """413: a request body over ``max_body_bytes`` (raised by ``middleware.BodyLimit``)."""

    status = 413


class Unauthorized(BitseekError):
    """401: an admin route without the right Bearer token."""

    status = 401


class AdminDisabled(BitseekError):
    """404: an admin route while no admin token is configured."""

    status = 404


class Unavailable(BitseekError):
    """503: the server cannot do it now (e.g. start a job); nothing changed."""

    status = 503


def model_rejected(exc: ValueError, fields: Sequence[str], batch_field: str) -> InvalidInput:
    """A model's ValueError as a 422 naming the item it refused (its entry in ``fields``), or
    ``batch_field`` when the model does not say which item."""
    field = fields[exc.index] if isinstance(exc, ItemRejected) else batch_field
    return InvalidInput(f"the model rejected the items: {exc}", field)


_UNION_TAGS = {"str", "int", "float", "bool", "none", "list[float]", "function-after"}


def _loc(loc: Sequence[Any]) -> str:
    # ("body", "items", 3, "text") -> "items[3].text": the field as the client wrote it
    out = ""
    for part in loc:
        if part in ("body", "query", "path", "header") and not out:
            continue
        if part in _UNION_TAGS:  # pydantic names the union branch it tried; not a field
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


def _problem(error: Any) -> dict[str, str]:
    """One validation error as (field, message); a body that is not JSON is the body's
    problem, at a character (FastAPI puts the position where a field would be)."""
    loc = tuple(error.get("loc", ()))
    if error.get("type") == "json_invalid":
        at = next((part for part in loc if isinstance(part, int)), None)
        reason = (error.get("ctx") or {}).get("error", "")
        where = f" at character {at}" if at is not None else ""
        return {"field": "body", "message": f"invalid JSON{where}: {reason}".rstrip(": ")}
    return {"field": _loc(loc), "message": str(error.get("msg", ""))}


def error_response(exc: BitseekError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    async def on_domain(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, BitseekError)
        return error_response(exc)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        details = [_problem(e) for e in exc.errors()] or [
            {"field": "body", "message": "invalid request"}
        ]
        field = details[0]["field"]
        body = {
            "error": {
                "type": "InvalidInput",
                "message": f"{field}: {details[0]['message']}",
                "field": field,
                "details": details[:20],
            }
        }
        return JSONResponse(body, status_code=422)

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        body = {"error": {"type": "HTTPError", "message": str(exc.detail)}}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not bad input: log it with the traceback and answer without leaking internals.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        body = {"error": {"type": "InternalError", "message": "internal error; see server log"}}
        return JSONResponse(body, status_code=500)

    app.add_exception_handler(BitseekError, on_domain)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
