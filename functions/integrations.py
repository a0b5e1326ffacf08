"""The HTTP API of docs/api.md (except /api/alerts and /api/health): register and manage
integrations, read tenant status, devices and software, and serve the OpenAPI document.

Each function is three moves: parse (shared.api.parsing), call one service, shape the response
(shared.api.views). `problem_boundary` turns every failure into an RFC 9457 problem document. Route
templates stay plain; ids are validated here so a bad one is a 400 problem, never a 500. Start-up stays
fast because the Azure SDKs load on first use (shared/sdk.py), not because imports hide in functions.
"""

from __future__ import annotations

import azure.functions as func

from functions.audit import audited, location_id
from functions.http_problems import json_response, next_link, problem_boundary, read_body
from functions.runtime import runtime
from shared.api.models import IntegrationPatch, SecretRotation, SyncAccepted, SyncRequest
from shared.api.openapi import build_openapi
from shared.api.parsing import (
    parse_asset_query,
    parse_bool,
    parse_guid,
    parse_model,
    parse_order,
    parse_page,
    parse_registration,
    sign_continuation,
    verify_continuation,
)
from shared.api.problems import FieldError, invalid_request
from shared.api.views import (
    CsvWriter,
    csv_columns,
    if_match_admits,
    integration_etag,
    integration_view,
    registered_view,
    tenant_view,
)
from shared.entities import EXPOSED
from shared.errors import FieldProblem
from shared.services import queries
from shared.services.editing import change_integration
from shared.services.queries import load_integration
from shared.services.registration import register, remove_integration, request_sync, rotate_secrets

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # azure-functions ships it unannotated

_AUTH = func.AuthLevel.FUNCTION


@bp.route(route="integrations", methods=["POST"], auth_level=_AUTH)
@audited("integration.register", created_id=location_id)
@problem_boundary
async def register_integration(req: func.HttpRequest) -> func.HttpResponse:
    body = parse_registration(read_body(req) or {})
    warnings: list[FieldProblem] = []
    integration = await register(await runtime.get(), body.to_domain(), warnings=warnings)
    return json_response(registered_view(integration, warnings), 201,
                         {"Location": f"/api/integrations/{integration.id}", "ETag": integration_etag(integration)})


@bp.route(route="integrations", methods=["GET"], auth_level=_AUTH)
@problem_boundary
async def list_integrations(req: func.HttpRequest) -> func.HttpResponse:
    top, token = parse_page(req.params, queries.INTEGRATION_ORDERS)
    order = parse_order(req.params, queries.INTEGRATION_ORDERS, [])
    scope = {"kind": "integrations", "o": order}
    rt = await runtime.get()
    after = await verify_continuation(token, scope, rt.continuation_keys)
    page, position = await queries.list_integrations(rt, top=top, after=after, order=order)
    body: dict[str, object] = {"value": [integration_view(i) for i in page]}
    if position is not None:
        continuation = await sign_continuation(position, scope, rt.continuation_keys)
        link: dict[str, object] = {"top": top, "continuation": continuation}
        if order != queries.INTEGRATION_ORDERS[0]:
            link["orderBy"] = order
        body["nextLink"] = next_link(req, link)
    return json_response(body)


@bp.route(route="integrations/{id}", methods=["GET"], auth_level=_AUTH)
@problem_boundary
async def get_integration(req: func.HttpRequest) -> func.HttpResponse:
    integration_id = parse_guid(req.route_params.get("id"), "id", "an integration")
    integration = await load_integration(await runtime.get(), integration_id)
    return json_response(integration_view(integration), headers={"ETag": integration_etag(integration)})


@bp.route(route="integrations/{id}", methods=["PATCH"], auth_level=_AUTH)
@audited("integration.change")
@problem_boundary
async def patch_integration(req: func.HttpRequest) -> func.HttpResponse:
    """Change the name, tenant filter, collection options or status (shared.services.editing); with
    If-Match, only the version the caller saw (412 otherwise)."""
    integration_id = parse_guid(req.route_params.get("id"), "id", "an integration")
    change = parse_model(IntegrationPatch, read_body(req) or {}).to_domain()
    if_match = req.headers.get("If-Match")
    integration = await change_integration(
        await runtime.get(), integration_id, change,
        expected=None if if_match is None else lambda current: if_match_admits(if_match, integration_etag(current)))
    return json_response(integration_view(integration), headers={"ETag": integration_etag(integration)})


@bp.route(route="integrations/{id}/secrets", methods=["PUT"], auth_level=_AUTH)
@audited("integration.rotateSecrets")
@problem_boundary
async def rotate_integration_secrets(req: func.HttpRequest) -> func.HttpResponse:
    integration_id = parse_guid(req.route_params.get("id"), "id", "an integration")
    body = parse_model(SecretRotation, read_body(req) or {})
    integration = await rotate_secrets(await runtime.get(), integration_id, body.to_domain())
    return json_response(integration_view(integration), headers={"ETag": integration_etag(integration)})


@bp.route(route="integrations/{id}/sync", methods=["POST"], auth_level=_AUTH)
@audited("integration.sync")
@problem_boundary
async def sync_integration(req: func.HttpRequest) -> func.HttpResponse:
    integration_id = parse_guid(req.route_params.get("id"), "id", "an integration")
    body = parse_model(SyncRequest, read_body(req, required=False) or {})
    queued = await request_sync(await runtime.get(), integration_id, body.tenant_ids)
    accepted = SyncAccepted(integration_id=integration_id, trigger="manual", queued=queued)
    return json_response(
        accepted.model_dump(mode="json", by_alias=True),
        202,
        {"Location": f"/api/integrations/{integration_id}/tenants"},
    )


@bp.route(route="integrations/{id}", methods=["DELETE"], auth_level=_AUTH)
@audited("integration.delete")
@problem_boundary
async def delete_integration(req: func.HttpRequest) -> func.HttpResponse:
    integration_id = parse_guid(req.route_params.get("id"), "id", "an integration")
    errors: list[FieldError] = []
    purge = parse_bool(req.params, "purgeAssets", False, errors)
    if errors:
        raise invalid_request(errors)
    await remove_integration(await runtime.get(), integration_id, purge_assets=purge)
    return func.HttpResponse(status_code=204)


@bp.route(route="integrations/{id}/tenants", methods=["GET"], auth_level=_AUTH)
@problem_boundary
async def list_integration_tenants(req: func.HttpRequest) -> func.HttpResponse:
    integration_id = parse_guid(req.route_params.get("id"), "id", "an integration")
    top, token = parse_page(req.params, queries.TENANT_ORDERS)
    order = parse_order(req.params, queries.TENANT_ORDERS, [])
    scope = {"kind": "tenants", "i": integration_id, "o": order}
    rt = await runtime.get()
    after = await verify_continuation(token, scope, rt.continuation_keys)
    tenants, position = await queries.list_tenants(rt, integration_id, top=top, continuation=after, order=order)
    body: dict[str, object] = {"value": [tenant_view(t) for t in tenants]}
    if position:
        continuation = await sign_continuation(position, scope, rt.continuation_keys)
        link: dict[str, object] = {"top": top, "continuation": continuation}
        if order != queries.TENANT_ORDERS[0]:
            link["orderBy"] = order
        body["nextLink"] = next_link(req, link)
    return json_response(body)


async def _assets(req: func.HttpRequest, kind: str) -> func.HttpResponse:
    integration_id = parse_guid(req.route_params.get("id"), "id", "an integration")
    tenant_id = parse_guid(req.route_params.get("tenantId"), "tenantId", "a tenant of the integration")
    query = parse_asset_query(
        req.params, req.headers.get("accept"), kind=kind, integration_id=integration_id, tenant_id=tenant_id
    )
    rt = await runtime.get()
    scope = query.scope(kind, integration_id, tenant_id)
    query = query.at(await verify_continuation(query.token, scope, rt.continuation_keys))
    if query.csv:
        # The Python worker buffers an HttpResponse whole (streaming needs the FastAPI extension), so the
        # export is assembled page by page and sent at once.
        writer = CsvWriter(csv_columns(kind))
        async for page in queries.export_assets(rt, kind, integration_id, tenant_id, query):
            writer.write(page)
        return func.HttpResponse(
            writer.text(),
            status_code=200,
            mimetype="text/csv",
            charset="utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="{kind}-{tenant_id}.csv"',
                "Cache-Control": "no-store",
            },
        )
    items, position = await queries.list_assets(rt, kind, integration_id, tenant_id, query)
    body: dict[str, object] = {"value": items}
    if position:
        continuation = await sign_continuation(position, scope, rt.continuation_keys)
        link = {"top": query.top, "search": query.search, "continuation": continuation, **query.filters}
        body["nextLink"] = next_link(req, link)
    return json_response(body)


def _register_list_route(name: str) -> None:
    """`GET /api/integrations/{id}/tenants/{tenantId}/{name}` for one exposed entity, as the function
    `list_tenant_{name}` (shared.entities declares which entities the API lists)."""
    async def handler(req: func.HttpRequest) -> func.HttpResponse:
        return await _assets(req, name)

    handler.__name__ = handler.__qualname__ = f"list_tenant_{name}"
    route = bp.route(route=f"integrations/{{id}}/tenants/{{tenantId}}/{name}", methods=["GET"], auth_level=_AUTH)
    route(problem_boundary(handler))


for _entity in EXPOSED:
    _register_list_route(_entity.name)


@bp.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@problem_boundary
async def openapi_document(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(build_openapi())
