"""Optional bearer API keys. No keys configured = auth off; probes, metrics and docs stay open.

API keys guard the inference and bundle endpoints; admin keys (a separate list) guard
``/admin/reload``, which does not exist without them.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from uservec.service.errors import AuthError
from uservec.service.settings import Settings

_bearer = HTTPBearer(auto_error=False, description="an API key from USERVEC_API_KEYS "
                     "(USERVEC_ADMIN_API_KEYS for /admin/reload)")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def check_key(keys: Sequence[str], credentials: HTTPAuthorizationCredentials | None) -> None:
    """401 when a key is required but none was sent, 403 when it matches none of ``keys``."""
    if not keys:
        return
    if credentials is None or not credentials.credentials:
        raise AuthError(
            "missing API key: send 'Authorization: Bearer <key>'",
            code="missing_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    token = credentials.credentials.encode()
    # compare against every key so timing does not reveal which prefix matched
    matches = [hmac.compare_digest(token, key.encode()) for key in keys]
    if not any(matches):
        raise AuthError("the API key is not valid", code="invalid_api_key")


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def require_api_key(request: Request, credentials: Credentials) -> None:
    check_key(_settings(request).api_keys, credentials)


async def require_admin_key(request: Request, credentials: Credentials) -> None:
    check_key(_settings(request).admin_api_keys, credentials)
