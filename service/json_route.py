"""A route class for the hot JSON endpoints: the body parsed and validated in one pass.

FastAPI reads a JSON body with ``json.loads``, validates it field by field in Python and then
solves the endpoint's dependencies one by one: a few hundred microseconds a request, more than
a search by code costs. Where an endpoint takes only path strings, one pydantic model as its
JSON body and the runtime, ``JsonBodyRoute`` calls it with the model that pydantic-core parses
from the raw bytes (``model_validate_json``) and the runtime from the app's state, and a model
it returns is serialised once (``json_response``: the endpoints return their declared
``response_model``, which FastAPI would validate again before serialising it). The route
keeps FastAPI's declaration, so the OpenAPI document and every other behaviour stay FastAPI's;
any request outside that shape (no body, another content type) goes the ordinary way.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from service.deps import get_runtime
from service.routes.common import json_response
from service.utf8_route import Utf8Route, check_json, is_json


class JsonBodyRoute(Utf8Route):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        general = super().get_route_handler()
        shape = _lean_shape(self)
        if shape is None:
            return general
        path_names, body_name, model, runtime_name = shape
        endpoint = self.endpoint
        is_async = inspect.iscoroutinefunction(endpoint)
        status = self.status_code or 200

        async def lean(request: Request) -> Response:
            content_type = request.headers.get("content-type", "")
            body = await request.body()
            if not body or not is_json(content_type):
                return await general(request)  # FastAPI says what is missing or wrong
            check_json(body)
            try:
                value = model.model_validate_json(body)
            except ValidationError as exc:
                errors = exc.errors()
                if any(e["type"] == "json_invalid" for e in errors):
                    # Python's JSON reader decides: it accepts what pydantic-core's does not
                    # (a lone surrogate escape), which the fields' own checks then name
                    return await general(request)
                errors = [{**e, "loc": ("body", *e["loc"])} for e in errors]
                raise RequestValidationError(errors, body=body) from None
            params = request.path_params
            kwargs = {name: params[name] for name in path_names}
            kwargs[body_name] = value
            kwargs[runtime_name] = request.app.state.runtime
            if is_async:
                result = await endpoint(**kwargs)
            else:
                result = await run_in_threadpool(endpoint, **kwargs)
            if isinstance(result, Response):
                return result
            return json_response(result, status)

        return lean


def _lean_shape(route: JsonBodyRoute) -> tuple[list[str], str, type[BaseModel], str] | None:
    """(path parameter names, body parameter name, body model, runtime parameter name) when
    the endpoint takes exactly these (its path parameters plain strings), else None."""
    dependant = route.dependant
    if (
        dependant.query_params
        or dependant.header_params
        or dependant.cookie_params
        or dependant.request_param_name
        or len(dependant.body_params) != 1
        or len(dependant.dependencies) != 1
        or dependant.dependencies[0].call is not get_runtime
        or route.dependencies
    ):
        return None
    body = dependant.body_params[0]
    model = body.field_info.annotation
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return None
    if any(p.field_info.annotation is not str for p in dependant.path_params):
        return None
    runtime_name = dependant.dependencies[0].name
    if runtime_name is None:
        return None
    return [p.name for p in dependant.path_params], body.name, model, runtime_name
