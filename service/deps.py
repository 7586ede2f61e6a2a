"""FastAPI dependencies: the runtime, the settings, and the admin guard."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.config import Settings
from service.errors import AdminDisabled, Unauthorized
from service.runtime import Runtime

_bearer = HTTPBearer(auto_error=False, description="BITSEEK_ADMIN_TOKEN")


async def get_runtime(request: Request) -> Runtime:
    # async on purpose: FastAPI runs plain-def dependencies in its thread pool (a thread hop
    # per request); these only read attributes
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_settings(runtime: RuntimeDep) -> Settings:
    return runtime.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def require_admin(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Admin routes do not exist without a configured token, and need it as a Bearer token."""
    if not settings.admin_token:
        raise AdminDisabled("admin routes are disabled: set BITSEEK_ADMIN_TOKEN to enable them")
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("admin route: send 'Authorization: Bearer <token>'", "authorization")
    if not hmac.compare_digest(credentials.credentials.encode(), settings.admin_token.encode()):
        raise Unauthorized("admin route: wrong token", "authorization")


AdminDep = Depends(require_admin)
