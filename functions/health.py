"""GET /api/health (anonymous): version, and whether storage and Key Vault answer."""

from __future__ import annotations

import asyncio
import json
import logging

import azure.functions as func

from functions.runtime import runtime
from shared import __version__
from shared.services.health import check_health
from shared.settings import SettingsError

bp = func.Blueprint()
log = logging.getLogger(__name__)
CHECK_TIMEOUT_SECONDS = 5.0


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def health(req: func.HttpRequest) -> func.HttpResponse:
    try:
        rt = await runtime.get()
    except SettingsError as exc:
        body = {"status": "unhealthy", "version": __version__, "detail": str(exc)}
        return func.HttpResponse(json.dumps(body), status_code=200, mimetype="application/json")
    report = await asyncio.wait_for(check_health(rt), timeout=CHECK_TIMEOUT_SECONDS * 2)
    return func.HttpResponse(json.dumps(report), status_code=200, mimetype="application/json")
