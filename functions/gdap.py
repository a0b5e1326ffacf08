"""GDAP-era access (docs/gdap.md): the partner admin's one sign-in, and consent through Partner Center.

Each function: parse the ids, call one service, shape the response; `problem_boundary` turns failures
into problem documents.
"""

from __future__ import annotations

import azure.functions as func

from functions.audit import audited
from functions.http_problems import json_response, problem_boundary
from functions.runtime import runtime
from shared.api.parsing import parse_guid
from shared.api.views import consent_view, signin_view
from shared.services.consent import consent_all
from shared.services.consent import consent_tenant as consent
from shared.services.partner_signin import poll_signin, start_signin

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # azure-functions ships it unannotated

_AUTH = func.AuthLevel.FUNCTION


@bp.route(route="integrations/{id}/partner-signin", methods=["POST"], auth_level=_AUTH)
@audited("integration.partnerSignin")
@problem_boundary
async def start_partner_signin(req: func.HttpRequest) -> func.HttpResponse:
    integration_id = parse_guid(req.route_params.get("id"), "id", "an integration")
    integration = await start_signin(await runtime.get(), integration_id)
    return json_response(signin_view(integration), 202,
                         {"Location": f"/api/integrations/{integration_id}/partner-signin"})


@bp.route(route="integrations/{id}/partner-signin", methods=["GET"], auth_level=_AUTH)
@problem_boundary
async def get_partner_signin(req: func.HttpRequest) -> func.HttpResponse:
    integration_id = parse_guid(req.route_params.get("id"), "id", "an integration")
    outcome = await poll_signin(await runtime.get(), integration_id)
    consents = outcome.consents if outcome.integration.auto_consent and outcome.consents else None
    return json_response(signin_view(outcome.integration, consents))


@bp.route(route="integrations/{id}/tenants/{tenantId}/consent", methods=["POST"], auth_level=_AUTH)
@audited("tenant.consent")
@problem_boundary
async def consent_tenant(req: func.HttpRequest) -> func.HttpResponse:
    integration_id = parse_guid(req.route_params.get("id"), "id", "an integration")
    tenant_id = parse_guid(req.route_params.get("tenantId"), "tenantId", "a tenant of the integration")
    result = await consent(await runtime.get(), integration_id, tenant_id)
    return json_response(consent_view(result))


@bp.route(route="integrations/{id}/consent", methods=["POST"], auth_level=_AUTH)
@audited("integration.consent")
@problem_boundary
async def consent_all_tenants(req: func.HttpRequest) -> func.HttpResponse:
    integration_id = parse_guid(req.route_params.get("id"), "id", "an integration")
    results = await consent_all(await runtime.get(), integration_id)
    failed = sum(1 for r in results if r.status == "failed")
    return json_response({"value": [consent_view(r) for r in results], "consented": len(results) - failed,
                          "failed": failed})
