"""Entra ID: OpenID metadata, JWKS and the v2.0 token endpoint (client credentials, device code,
refresh token).

Error codes and texts follow https://learn.microsoft.com/entra/identity-platform/reference-error-codes;
status codes follow what the service answers (invalid_client -> 401, the rest 400).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import uuid
from typing import Any

from aiohttp import web

from .context import RequestContext
from .errors import entra_error, json_response
from .model import PARTNER_CENTER, canonical_resource
from .timeutil import utcnow

META_TENANTS = ("common", "organizations", "consumers")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")

TOKEN_ERRORS: dict[int, tuple[int, str, str]] = {
    # code: (HTTP status, OAuth error, description template)
    90002: (
        400,
        "invalid_request",
        "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant.",
    ),
    700016: (
        400,
        "unauthorized_client",
        "Application with identifier '{app_id}' was not found in the directory '{tenant_name}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
    ),
    7000215: (
        401,
        "invalid_client",
        "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{app_id}'.",
    ),
    7000222: (
        401,
        "invalid_client",
        "The provided client secret keys for app '{app_id}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds.",
    ),
    7000218: (
        401,
        "invalid_client",
        "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
    ),
    7000112: (400, "unauthorized_client", "Application '{app_id}'({app_name}) is disabled."),
    65001: (
        400,
        "invalid_grant",
        "The user or administrator has not consented to use the application with ID '{app_id}' named '{app_name}'. Send an interactive authorization request for this user and resource.",
    ),
    90094: (400, "invalid_grant", "The grant requires admin permission."),
    90099: (
        400,
        "invalid_grant",
        "The application '{app_id}' ({app_name}) has not been authorized in the tenant '{tenant}'. Applications must be authorized to access the customer tenant before partner delegated administrators can use them. Provide pre-consent or execute the appropriate Partner Center API to authorize the application.",
    ),
    500011: (
        400,
        "invalid_resource",
        "The resource principal named {resource} was not found in the tenant named {tenant_name}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.",
    ),
    70011: (
        400,
        "invalid_scope",
        "The provided value for the input parameter 'scope' isn't valid. The scope {scope} isn't valid.",
    ),
    900144: (400, "invalid_request", "The request body must contain the following parameter: '{parameter}'."),
    50059: (
        400,
        "invalid_request",
        "No tenant-identifying information found in either the request or implied by any provided credentials.",
    ),
    70016: (400, "authorization_pending", "OAuth 2.0 device flow error. Authorization is pending. Continue polling."),
    70000: (400, "invalid_grant", "Provided grant is invalid or malformed."),
    70008: (
        400,
        "invalid_grant",
        "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
    ),
    900561: (400, "invalid_request", "The endpoint only accepts POST requests. Received a GET request."),
    1002012: (400, "unsupported_grant_type", "The provided value for the input parameter 'grant_type' is not valid."),
}


def token_error(code: int, **fields: Any) -> web.Response:
    status, error, template = TOKEN_ERRORS[code]
    defaults = {
        "tenant": "",
        "tenant_name": "",
        "app_id": "",
        "app_name": "",
        "resource": "",
        "scope": "",
        "parameter": "",
    }
    return entra_error(status, error, code, template.format(**{**defaults, **fields}))


def _metadata(ctx: RequestContext, tenant: str) -> dict[str, Any]:
    base = ctx.origin
    issuer_tenant = "{tenantid}" if tenant in META_TENANTS else tenant
    return {
        "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": f"{base}/{issuer_tenant}/v2.0",
        "request_uri_parameter_supported": False,
        "userinfo_endpoint": f"{base}/graph/oidc/userinfo",
        "authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/devicecode",
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": f"{base}/{tenant}/oauth2/v2.0/logout",
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "tid", "oid", "name", "preferred_username"],
        "kerberos_endpoint": f"{base}/{tenant}/kerberos",
        "tenant_region_scope": "NA",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
    }


async def handle(ctx: RequestContext) -> web.StreamResponse:
    segments = [s for s in ctx.path.split("/") if s]
    request = ctx.request
    if not segments:
        return token_error(900144, parameter="tenant")
    tenant_segment = segments[0]
    rest = "/".join(segments[1:])
    if tenant_segment == "common" and rest == "discovery/instance":
        # Instance discovery (clients here turn it off, but answer it anyway).
        authority = request.query.get("authorization_endpoint", f"{ctx.origin}/common/oauth2/authorize")
        return json_response(
            {
                "tenant_discovery_endpoint": f"{ctx.origin}/{{tenant}}/v2.0/.well-known/openid-configuration",
                "api-version": "1.1",
                "metadata": [
                    {"preferred_network": request.host, "preferred_cache": request.host, "aliases": [request.host]}
                ],
                "authorization_endpoint": authority,
            }
        )
    meta = tenant_segment.lower() in META_TENANTS
    tenant = None if meta else ctx.server.sim.resolve_tenant(tenant_segment)
    if tenant is not None and tenant.exists:
        ctx.tenant_id = tenant.tenant_id
    if rest in ("v2.0/.well-known/openid-configuration", ".well-known/openid-configuration"):
        ctx.route = "entra.metadata"
        if not meta and (tenant is None or not tenant.exists):
            # Real Entra answers 400 here for an unknown tenant; MSAL turns it into a ValueError
            # carrying this body, so callers still see AADSTS90002.
            return json_response(
                {
                    "error": "invalid_tenant",
                    "error_description": "AADSTS90002: " + TOKEN_ERRORS[90002][2].format(tenant=tenant_segment),
                },
                status=400,
            )
        name = tenant_segment.lower() if meta else tenant.tenant_id  # type: ignore[union-attr]
        return json_response(_metadata(ctx, name))
    if rest in ("discovery/v2.0/keys", "discovery/keys"):
        ctx.route = "entra.jwks"
        return json_response(ctx.server.tokens.jwks)
    if rest == "oauth2/v2.0/authorize":
        return web.Response(text="Interactive sign-in is not simulated; use the device code flow.", status=400)
    if rest not in ("oauth2/v2.0/token", "oauth2/v2.0/devicecode", "oauth2/token"):
        return entra_error(404, "invalid_request", 90100, f"Invalid request. Unknown endpoint '{ctx.path}'.")
    if request.method != "POST":
        return token_error(900561)
    form = await request.post()
    fields = {k: str(v) for k, v in form.items()}
    if rest == "oauth2/v2.0/devicecode":
        ctx.route = "entra.devicecode"
        return _device_code(ctx, tenant_segment, fields)
    ctx.route = "entra.token"
    ctx.app_id = fields.get("client_id")
    grant_type = fields.get("grant_type")
    if not grant_type:
        return token_error(900144, parameter="grant_type")
    if meta and grant_type == "client_credentials":
        return token_error(50059)
    if not meta and (tenant is None or not tenant.exists):
        return token_error(90002, tenant=tenant_segment)
    if grant_type == "client_credentials":
        return _client_credentials(ctx, tenant, fields)  # type: ignore[arg-type]
    if grant_type == "urn:ietf:params:oauth:grant-type:device_code":
        return _device_code_token(ctx, tenant, fields)
    if grant_type == "refresh_token":
        return _refresh(ctx, tenant, fields)
    return token_error(1002012)


def _scope_resource(scope: str) -> tuple[str | None, str | None, list[str]]:
    """(canonical resource, audience as requested, delegated scope names) from a ``scope`` value."""
    wanted = [s for s in scope.split() if s not in ("openid", "profile", "offline_access", "email")]
    if len(wanted) < 1:
        return None, None, []
    first = wanted[0]
    if "/" not in first.replace("https://", ""):
        return None, None, []
    resource_part, _, permission = first.rpartition("/")
    resource = canonical_resource(resource_part)
    names = [w.rpartition("/")[2] for w in wanted]
    return resource, resource_part.rstrip("/") if resource else None, names if permission != ".default" else []


def _forced(tenant: Any, app_id: str, resource: str | None) -> dict[str, Any] | None:
    forced = tenant.forced_token_error
    if not forced:
        return None
    if forced.get("appId") and forced["appId"] != app_id:
        return None
    if forced.get("resource") and canonical_resource(str(forced["resource"])) != resource:
        return None
    return forced


def _client_credentials(ctx: RequestContext, tenant: Any, fields: dict[str, str]) -> web.Response:
    sim = ctx.server.sim
    client_id = fields.get("client_id", "")
    if not client_id:
        return token_error(900144, parameter="client_id")
    app = sim.apps.get(client_id.lower())
    in_tenant = app is not None and (app.home_tenant_id == tenant.tenant_id or app.app_id in tenant.consents)
    forced = _forced(tenant, client_id, None)
    if forced and int(forced.get("code", 0)) == 90002:
        return token_error(90002, tenant=tenant.tenant_id)
    if app is None or not in_tenant or (forced and int(forced.get("code", 0)) == 700016):
        return token_error(700016, app_id=client_id, tenant_name=tenant.tenant_id)
    if app.disabled or (forced and int(forced.get("code", 0)) == 7000112):
        return token_error(7000112, app_id=app.app_id, app_name=app.display_name)
    provided = fields.get("client_secret")
    if not provided:
        return token_error(7000218)
    now = utcnow()
    matching = [s for s in app.secrets if secrets.compare_digest(s.value, provided)]
    if not matching or all(s.start > now for s in matching):
        return token_error(7000215, app_id=app.app_id)
    if all(s.end <= now for s in matching):
        return token_error(7000222, app_id=app.app_id)
    scope = fields.get("scope", "")
    if not scope:
        return token_error(900144, parameter="scope")
    resource, audience, _names = _scope_resource(scope)
    if resource is None or audience is None or not scope.split()[0].endswith("/.default"):
        return token_error(70011, scope=scope)
    forced = _forced(tenant, app.app_id, resource)
    if forced:
        code = int(forced.get("code", 65001))
        if code in TOKEN_ERRORS:
            return token_error(
                code,
                tenant=tenant.tenant_id,
                tenant_name=tenant.display_name,
                app_id=app.app_id,
                app_name=app.display_name,
                resource=audience,
                scope=scope,
            )
    roles = sorted(tenant.granted_roles(app.app_id, resource) or set())
    lifetime = int(sim.options.get("tokenLifetimeS", 3599))
    token = ctx.server.tokens.issue(
        tenant_id=tenant.tenant_id, app_id=app.app_id, audience=audience, roles=roles, lifetime_s=lifetime
    )
    return json_response(
        {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": token}
    )


# --- Partner admin sign-in (device code + refresh token), the lower-fidelity part -----------


def _device_code(ctx: RequestContext, tenant_segment: str, fields: dict[str, str]) -> web.Response:
    client_id = fields.get("client_id", "")
    if not client_id:
        return token_error(900144, parameter="client_id")
    if client_id.lower() not in ctx.server.sim.apps:
        return token_error(700016, app_id=client_id, tenant_name=tenant_segment)
    device_code = secrets.token_urlsafe(32)
    user_code = "".join(secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(9))
    ctx.server.device_codes[device_code] = {
        "clientId": client_id.lower(),
        "scope": fields.get("scope", ""),
        "userCode": user_code,
        "polls": 0,
        "approved": False,
        "tenant": tenant_segment,
    }
    verification = f"{ctx.origin}/_sim/devicelogin"
    return json_response(
        {
            "user_code": user_code,
            "device_code": device_code,
            "verification_uri": verification,
            "expires_in": 900,
            "interval": 1,
            "message": f"To sign in, use a web browser to open the page {verification} and enter the code {user_code} to authenticate.",
        }
    )


def _delegated_response(ctx: RequestContext, tenant: Any, app_id: str, scope: str, upn: str) -> web.Response:
    sim = ctx.server.sim
    resource, audience, names = _scope_resource(scope)
    if resource is None or audience is None:
        resource, audience, names = PARTNER_CENTER, PARTNER_CENTER, ["user_impersonation"]
    tenant_id = tenant.tenant_id if tenant is not None else sim.partner_tenant_id
    lifetime = int(sim.options.get("tokenLifetimeS", 3599))
    access = ctx.server.tokens.issue(
        tenant_id=tenant_id,
        app_id=app_id,
        audience=audience,
        roles=[],
        lifetime_s=lifetime,
        scopes=names or ["user_impersonation"],
        upn=upn,
    )
    refresh = secrets.token_urlsafe(48)
    ctx.server.refresh_tokens[refresh] = {"clientId": app_id, "upn": upn, "home": sim.partner_tenant_id}
    oid = str(uuid.uuid5(uuid.NAMESPACE_URL, upn))
    client_info = (
        base64.urlsafe_b64encode(json.dumps({"uid": oid, "utid": sim.partner_tenant_id}).encode()).rstrip(b"=").decode()
    )
    return json_response(
        {
            "token_type": "Bearer",
            "scope": " ".join(f"{audience}/{n}" for n in (names or ["user_impersonation"])),
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": access,
            "refresh_token": refresh,
            "client_info": client_info,
        }
    )


def _partner_admin_upn(ctx: RequestContext) -> str:
    partner = ctx.server.sim.tenants[ctx.server.sim.partner_tenant_id]
    return f"admin@{partner.default_domain}"


def _device_code_token(ctx: RequestContext, tenant: Any, fields: dict[str, str]) -> web.Response:
    entry = ctx.server.device_codes.get(fields.get("device_code", ""))
    if entry is None:
        return token_error(70000)
    entry["polls"] += 1
    auto_after = int(ctx.server.sim.options.get("deviceCodeAutoApprovePolls", 1))
    if not entry["approved"] and entry["polls"] <= auto_after:
        return token_error(70016)
    ctx.server.device_codes.pop(fields.get("device_code", ""), None)
    return _delegated_response(
        ctx, tenant, entry["clientId"], fields.get("scope") or entry["scope"], _partner_admin_upn(ctx)
    )


def _refresh(ctx: RequestContext, tenant: Any, fields: dict[str, str]) -> web.Response:
    entry = ctx.server.refresh_tokens.get(fields.get("refresh_token", ""))
    if entry is None:
        return token_error(70008)
    return _delegated_response(
        ctx, tenant, entry["clientId"], fields.get("scope", f"{PARTNER_CENTER}/.default"), entry["upn"]
    )
