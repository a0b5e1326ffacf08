"""Partner Center REST: customers (paged with ``MS-ContinuationToken``) and application consents
(https://learn.microsoft.com/partner-center/developer/get-a-list-of-customers,
https://learn.microsoft.com/partner-center/developer/control-panel-vendor-apis#create-consent)."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from aiohttp import web

from .context import RequestContext
from .errors import json_response, partner_center_error
from .model import PARTNER_CENTER, RESOURCE_APP_IDS, RESOURCE_BY_APP_ID, TenantState
from .timeutil import utcnow
from .tokens import TokenRejected

AUDIENCES = frozenset({PARTNER_CENTER, RESOURCE_APP_IDS[PARTNER_CENTER]})
PAGE_MAX = 500
RELATIONSHIP_TO_PARTNER = {
    "dap": "reseller", "both": "reseller", "gdap": "reseller", "indirect": "advisor", "reseller": "reseller",
}
_CONSENTS = re.compile(r"^/v1/customers/([^/]+)/applicationconsents(?:/([^/]+))?$")
CONSENT_ERRORS_CLEARED = {65001, 90094, 90099, 700016}


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode()


def _offset(token: str) -> int:
    try:
        return int(json.loads(base64.urlsafe_b64decode(token.encode()).decode())["o"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ValueError("bad continuation token") from exc


def customers_of(ctx: RequestContext, partner_tid: str) -> list[TenantState]:
    return [
        t
        for t in ctx.server.sim.tenants.values()
        if t.partner_tenant_id == partner_tid and t.relationship in RELATIONSHIP_TO_PARTNER
    ]


def _customer_json(tenant: TenantState) -> dict[str, Any]:
    return {
        "id": tenant.tenant_id,
        "commerceId": tenant.pc_customer_id,
        "companyProfile": {
            "tenantId": tenant.tenant_id,
            "domain": tenant.default_domain,
            "companyName": tenant.display_name,
            "attributes": {"objectType": "CustomerCompanyProfile"},
        },
        "relationshipToPartner": RELATIONSHIP_TO_PARTNER[tenant.relationship],
        "attributes": {"objectType": "Customer"},
    }


async def handle(ctx: RequestContext) -> web.StreamResponse:
    server = ctx.server
    try:
        principal = server.tokens.validate(ctx.request.headers.get("Authorization"), AUDIENCES)
    except TokenRejected as exc:
        response = partner_center_error(401, 401, f"Unauthorized: {exc.message}", error_name="Unauthorized")
        response.headers["WWW-Authenticate"] = "Bearer"
        return response
    ctx.tenant_id = principal.tenant_id
    ctx.app_id = principal.app_id
    blocked = await server.gate(ctx, None)
    if blocked is not None:
        return blocked
    path = ctx.path.rstrip("/")
    method = ctx.request.method
    customers = customers_of(ctx, principal.tenant_id)
    if path == "/v1/customers" and method == "GET":
        ctx.route = "partnercenter.customers"
        if principal.tenant_id != server.sim.partner_tenant_id and not customers:
            return partner_center_error(
                403,
                600008,
                "The partner does not have a relationship with this tenant or is not a partner.",
                error_name="Forbidden",
            )
        return _list_customers(ctx, customers)
    match = _CONSENTS.match(path)
    if match:
        ctx.route = "partnercenter.applicationconsents"
        customer = next((c for c in customers if c.tenant_id == match.group(1).lower()), None)
        if customer is None:
            return partner_center_error(
                403,
                600008,
                f"Partner does not have a relationship with customer {match.group(1)}.",
                error_name="Forbidden",
            )
        if method == "POST" and match.group(2) is None:
            if not customer.has_dap() and not customer.gdap_allows_consent(utcnow()):
                # Consent needs an admin relationship: DAP, or active GDAP with a role that may
                # consent apps (https://learn.microsoft.com/powershell/partnercenter/exchange-online-gdap-app).
                return partner_center_error(
                    403,
                    600008,
                    f"The partner has no admin relationship with customer {customer.tenant_id} that allows "
                    "application consent.",
                    error_name="Forbidden",
                )
            return await _create_consent(ctx, customer)
        if method == "DELETE" and match.group(2):
            if customer.consents.pop(match.group(2).lower(), None) is None:
                return partner_center_error(404, 600014, "Application consent not found.", error_name="NotFound")
            return web.Response(status=204)
        if method == "GET" and match.group(2) is None:
            return json_response({"totalCount": 0, "items": [], "attributes": {"objectType": "Collection"}})
    return partner_center_error(404, 404, f"The requested resource {path} was not found.", error_name="NotFound")


def _list_customers(ctx: RequestContext, customers: list[TenantState]) -> web.Response:
    query = ctx.request.query
    try:
        size = max(1, min(int(query.get("size", PAGE_MAX)), PAGE_MAX))
    except ValueError:
        return partner_center_error(400, 400, "The size parameter must be an integer.", error_name="BadRequest")
    offset = 0
    if query.get("seekOperation", "").lower() == "next":
        token = ctx.request.headers.get("MS-ContinuationToken")
        if not token:
            return partner_center_error(
                400, 2000, "A continuation token is required for seekOperation=Next.", error_name="BadRequest"
            )
        try:
            offset = _offset(token)
        except ValueError:
            return partner_center_error(400, 2000, "The continuation token is invalid.", error_name="BadRequest")
    page = customers[offset : offset + size]
    links: dict[str, Any] = {"self": {"uri": f"/v1/customers?size={size}", "method": "GET", "headers": []}}
    if offset + size < len(customers):
        links["next"] = {
            "uri": f"/v1/customers?size={size}&seekOperation=Next",
            "method": "GET",
            "headers": [{"key": "MS-ContinuationToken", "value": _token(offset + size)}],
        }
    return json_response(
        {
            "totalCount": len(page),
            "items": [_customer_json(t) for t in page],
            "links": links,
            "attributes": {"objectType": "Collection"},
        }
    )


async def _create_consent(ctx: RequestContext, customer: TenantState) -> web.Response:
    try:
        body = await ctx.request.json()
    except (ValueError, UnicodeDecodeError):
        return partner_center_error(400, 2000, "The request body is not valid JSON.", error_name="BadRequest")
    if (
        not isinstance(body, dict)
        or not body.get("applicationId")
        or not isinstance(body.get("applicationGrants"), list)
    ):
        return partner_center_error(
            400, 2000, "applicationId and applicationGrants are required.", error_name="BadRequest"
        )
    app_id = str(body["applicationId"]).lower()
    app = ctx.server.sim.apps.get(app_id)
    if app is None:
        return partner_center_error(400, 2000, f"Application {app_id} was not found.", error_name="BadRequest")
    grants: dict[str, set[str]] = {}
    for grant in body["applicationGrants"]:
        resource = RESOURCE_BY_APP_ID.get(str((grant or {}).get("enterpriseApplicationId", "")).lower())
        if resource is None:
            return partner_center_error(
                400, 2000, f"Unknown enterpriseApplicationId {grant!r}.", error_name="BadRequest"
            )
        scopes = {s.strip() for s in str(grant.get("scope", "")).split(",") if s.strip()}
        grants.setdefault(resource, set()).update(scopes)
    if app_id in customer.consents:
        # Callers treat this as success: the service principal already exists.
        return partner_center_error(409, 409, "Permission entry already exists.", error_name="Conflict")
    customer.consents[app_id] = grants
    forced = customer.forced_token_error
    if forced and int(forced.get("code", 0)) in CONSENT_ERRORS_CLEARED and forced.get("appId", app_id) == app_id:
        customer.forced_token_error = None
    return json_response(
        {
            "applicationId": app_id,
            "displayName": body.get("displayName", app.display_name),
            "applicationGrants": body["applicationGrants"],
        },
        status=201,
    )
