"""Reads behind the API: integrations, tenant status, and a tenant's devices and software.

Every id reaching here was validated as a GUID by the parser; stores build their queries from those
values only. Lists page with the store's own continuation, wrapped by the API layer in an opaque token.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol

from shared.errors import ErrorCode, FieldProblem, InvalidInput, NotFound
from shared.models import CustomerTenant, Integration
from shared.stores.assets import AssetStore, InvalidQuery

if TYPE_CHECKING:
    from shared.runtime import Runtime

EXPORT_PAGE = 1000
EXPORT_MAX_ROWS = 500_000  # a CSV export stops here rather than exhausting the worker's memory


class AssetQuery(Protocol):
    """What a list of assets is asked; the HTTP edge's validated asset query is one."""

    @property
    def top(self) -> int: ...

    @property
    def continuation(self) -> Any: ...

    @property
    def search(self) -> str | None: ...

    @property
    def filters(self) -> dict[str, Any]: ...


async def load_integration(rt: Runtime, integration_id: str) -> Integration:
    integration = await rt.integrations.get_integration(integration_id)
    if integration is None:
        raise NotFound("integration", "id", "List the integrations with GET /api/integrations.")
    return integration


INTEGRATION_ORDERS = ("createdAt", "displayName")


def _integration_key(order: str, integration: Integration) -> list[str]:
    if order == "displayName":
        return [integration.display_name.casefold(), integration.id]
    return [integration.created_at.isoformat(), integration.id]


async def list_integrations(
    rt: Runtime, *, top: int, after: Any, order: str = "createdAt"
) -> tuple[list[Integration], list[str] | None]:
    """A page of integrations, oldest first (or by name, `INTEGRATION_ORDERS`); the position is the sort
    key of the last one shown. An MSP has a handful of integrations, so they are read whole and paged in
    memory."""
    ordered = sorted(await rt.integrations.list_integrations(), key=lambda i: _integration_key(order, i))
    if isinstance(after, list) and len(after) == 2 and all(isinstance(p, str) for p in after):
        ordered = [i for i in ordered if _integration_key(order, i) > after]
    page = ordered[:top]
    more = len(ordered) > top
    return page, (_integration_key(order, page[-1]) if more and page else None)


def _table_position(value: Any) -> dict[str, str] | None:
    """A Table Storage continuation (NextPartitionKey / NextRowKey) that came back from a client."""
    if not isinstance(value, dict) or not value:
        return None
    allowed = {"PartitionKey", "RowKey"}
    if set(value) - allowed or not all(isinstance(v, str) and len(v) <= 1024 for v in value.values()):
        return None
    return {str(k): str(v) for k, v in value.items()}


TENANT_ORDERS = ("tenantId", "displayName", "lastSync")


def tenant_sort_key(order: str, tenant: CustomerTenant) -> list[str]:
    """The position of a tenant in an ordered list, as strings (they travel in continuation tokens):
    `displayName` A to Z ignoring case, unnamed last; `lastSync` the longest without a finished sync first
    (never synced before all); the tenant id breaks ties."""
    if order == "displayName":
        name = (tenant.display_name or "").casefold()
        return ["1" if not name else "0", name, tenant.tenant_id]
    finished = tenant.last_sync_finished_at
    return ["" if finished is None else finished.isoformat(), tenant.tenant_id]


async def list_tenants(
    rt: Runtime, integration_id: str, *, top: int, continuation: Any, order: str = "tenantId"
) -> tuple[list[CustomerTenant], Any]:
    """A page of the integration's tenants. In tenant-id order the storage service pages them; another
    order (`TENANT_ORDERS`) reads the integration's tenants whole (one partition: about one request per
    1,000 tenants per page) and pages them in memory by their position (`tenant_sort_key`)."""
    await load_integration(rt, integration_id)
    if order != "tenantId":
        ordered = sorted(await rt.tenants.list_tenants(integration_id), key=lambda t: tenant_sort_key(order, t))
        if isinstance(continuation, list) and all(isinstance(p, str) for p in continuation):
            ordered = [t for t in ordered if tenant_sort_key(order, t) > continuation]
        page = ordered[:top]
        return page, (tenant_sort_key(order, page[-1]) if len(ordered) > top and page else None)
    async for tenants, next_token in rt.tenants.iter_tenant_page(
        integration_id, top=top, continuation=_table_position(continuation)
    ):
        return tenants, next_token or None
    return [], None


async def _load_tenant(rt: Runtime, integration_id: str, tenant_id: str) -> None:
    await load_integration(rt, integration_id)
    if await rt.tenants.get_tenant(integration_id, tenant_id) is None:
        raise NotFound(
            "tenant in this integration",
            "tenantId",
            "List the integration's tenants with GET /api/integrations/{id}/tenants.",
        )


@asynccontextmanager
async def _store_query() -> AsyncIterator[None]:
    """The asset store refuses a parameter it cannot use with `InvalidQuery`: invalid input."""
    try:
        yield
    except InvalidQuery as exc:
        raise InvalidInput(
            [
                FieldProblem(
                    exc.field,
                    ErrorCode.INVALID_VALUE,
                    str(exc),
                    "Correct the query parameter; see /api/openapi.json.",
                )
            ]
        ) from None


def _asset_store(rt: Runtime) -> Any:
    return AssetStore(rt.tables)


async def _asset_page(
    store: Any, kind: str, integration_id: str, tenant_id: str, query: AssetQuery, top: int, continuation: Any
) -> tuple[list[dict[str, Any]], str | None]:
    async with _store_query():
        items, token = await store.list_assets(kind, integration_id, tenant_id, top=top, continuation=continuation,
                                               search=query.search, filters=query.filters)
    return list(items), token


async def list_assets(
    rt: Runtime, kind: str, integration_id: str, tenant_id: str, query: AssetQuery
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of one entity's assets of a tenant (`kind` names a listed entity in shared.entities)."""
    await _load_tenant(rt, integration_id, tenant_id)
    return await _asset_page(_asset_store(rt), kind, integration_id, tenant_id, query, query.top,
                             query.continuation)


async def export_assets(
    rt: Runtime, kind: str, integration_id: str, tenant_id: str, query: AssetQuery
) -> AsyncIterator[list[dict[str, Any]]]:
    """Every page of a tenant's assets of one entity (same filters), for a CSV export."""
    await _load_tenant(rt, integration_id, tenant_id)
    store = _asset_store(rt)
    continuation: Any = query.continuation
    rows = 0
    while True:
        items, continuation = await _asset_page(store, kind, integration_id, tenant_id, query, EXPORT_PAGE,
                                                continuation)
        rows += len(items)
        yield list(items)
        if not continuation or rows >= EXPORT_MAX_ROWS:
            return
