"""Alerts: `GET /api/alerts`, `POST /api/alerts/check` (function key) and the secret-expiry timer.

The timer runs on MEMSYNC_EXPIRY_SCHEDULE (NCRONTAB, default daily at 07:00 UTC), and `POST /api/alerts/check`
runs the same check on demand: it reads the properties of every memsync secret in Key Vault, keeps one
open alert per secret (the most urgent days-left mark of MEMSYNC_EXPIRY_THRESHOLDS_DAYS reached, raised
once per secret version), and posts undelivered alerts to MEMSYNC_ALERT_WEBHOOK_URL
(shared.services.expiry). Each function is parse -> one service -> response.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import azure.functions as func

from functions.audit import audited
from functions.http_problems import json_response, next_link, problem_boundary
from functions.runtime import runtime
from shared.api.models import ExpiryCheckOut, is_guid
from shared.api.parsing import Continuation, parse_top, read_continuation, sign_continuation, verify_continuation
from shared.api.problems import FieldError, invalid_request
from shared.clock import SystemClock
from shared.services import alerting
from shared.services.expiry import check_secret_expiry
from shared.stores.alerts import AlertStatus

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # azure-functions ships it untyped
log = logging.getLogger(__name__)

_PARAMETERS = ("top", "continuation", "integrationId", "status", "code")


@bp.route(route="alerts", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@problem_boundary
async def list_alerts(req: func.HttpRequest) -> func.HttpResponse:
    top, integration_id, status, token, scope = _parse_alert_query(req.params)
    rt = await runtime.get()
    continuation = await verify_continuation(token, scope, rt.continuation_keys)
    items, position = await alerting.list_alerts(
        rt, top=top, integration_id=integration_id, status=status, continuation=continuation
    )
    body: dict[str, object] = {"value": items}
    if position is not None:
        body["nextLink"] = next_link(req, {
            "top": top, "integrationId": integration_id, "status": status.value if status else None,
            "continuation": await sign_continuation(position, scope, rt.continuation_keys),
        })
    return json_response(body)


def _parse_alert_query(
    params: Mapping[str, str],
) -> tuple[int, str | None, AlertStatus | None, Continuation | None, dict[str, object]]:
    """`top`, `integrationId` (a GUID), `status` (open|resolved) and `continuation`, every problem at once."""
    errors: list[FieldError] = []
    for name in sorted(k for k in params if k not in _PARAMETERS)[:10]:
        shown = name if len(name) <= 40 and name.isprintable() else name[:37] + "..."
        errors.append(FieldError(shown, "unknownParameter", f"{shown} is not a query parameter of this list",
                                 "Use top, continuation, integrationId, status."))
    top = parse_top(params, errors)
    integration_id = params.get("integrationId") or None
    if integration_id is not None:
        if is_guid(integration_id):
            integration_id = integration_id.lower()
        else:
            errors.append(FieldError("integrationId", "invalidGuid", "integrationId must be a GUID",
                                     "Use an integration's id as GET /api/integrations returns it."))
            integration_id = None
    status: AlertStatus | None = None
    raw_status = params.get("status") or None
    if raw_status is not None:
        try:
            status = AlertStatus(raw_status)
        except ValueError:
            errors.append(FieldError("status", "invalidValue", "status must be open or resolved",
                                     "Send ?status=open or ?status=resolved, or leave it out for both."))
    scope: dict[str, object] = {"kind": "alerts", "i": integration_id, "s": status.value if status else None}
    token = read_continuation(params, errors)
    if errors:
        raise invalid_request(errors)
    return top, integration_id, status, token, scope


@bp.route(route="alerts/check", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@audited("alerts.check")
@problem_boundary
async def check_alerts(req: func.HttpRequest) -> func.HttpResponse:
    """The expiry check now, as the timer runs it; answers with what it did. It takes no body and no
    parameter (a body is ignored)."""
    report = await check_secret_expiry(await runtime.get(), clock=SystemClock())
    log.info("secret expiry check (on demand): %s", report.to_json())
    body = ExpiryCheckOut.model_validate(report.to_json()).model_dump(mode="json")
    return json_response(body, 202, {"Location": "/api/alerts?status=open"})


@bp.timer_trigger(schedule="%MEMSYNC_EXPIRY_SCHEDULE%", arg_name="timer", run_on_startup=False,
                  use_monitor=True)
async def secret_expiry_check(timer: func.TimerRequest) -> None:
    if timer.past_due:
        log.info("secret expiry check is past due; running now (missed marks are raised late, once)")
    report = await check_secret_expiry(await runtime.get(), clock=SystemClock())
    log.info("secret expiry check: %s", report.to_json())
