"""Microsoft Graph v1.0 reads memsync needs: Intune devices and apps, the organization, and a partner's
customers (contracts, GDAP). Paging streams: each page is yielded as it arrives, never a whole tenant.

Paging follows `@odata.nextLink` whole (it carries `$skiptoken`), each link once:
https://learn.microsoft.com/graph/paging
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import quote

from shared import permissions
from shared.errors import (
    ActionableError,
    ErrorCode,
    intune_not_licensed,
    permission_missing,
    throttled,
    unreachable,
)
from shared.http import ApiClient, ApiError, ContinuationRefused, RetriableApiError, continuation
from shared.mapping.devices import MANAGED_DEVICE_SELECT
from shared.mapping.software import DETECTED_APP_SELECT

PAGE_SIZE_DEVICES = "1000"  # Intune pages hold up to 1000 devices (FACTS.md)
_SCOPES_NAMED = re.compile(r"one of the following scopes:\s*([^-\"\n]+?)\s*(?:-|$|\")", re.IGNORECASE)
_NOT_APPLICABLE = "not applicable to target tenant"


def missing_permissions(area: str, roles: frozenset[str]) -> list[str]:
    """The permission a read of `area` lacks in a token's `roles` (see `shared.permissions.missing`)."""
    return permissions.missing(area, roles)


def error_message(body: Any) -> str:
    """Graph's `error.message`; Intune nests its own JSON in it (OBSERVED sample): unwrap that too."""
    message = ""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            message = str(error.get("message") or error.get("code") or "")
    elif isinstance(body, str):
        message = body
    start = message.find("{")
    if start >= 0:
        try:
            inner = json.loads(message[start:])
        except ValueError:
            return message
        if isinstance(inner, dict) and isinstance(inner.get("Message"), str):
            return str(inner["Message"])
    return message


def scopes_named(message: str) -> list[str]:
    """Scopes an Intune 403 names ("Application must have one of the following scopes: A, B - ...")."""
    found = _SCOPES_NAMED.search(message)
    if not found:
        return []
    return [s.strip() for s in found.group(1).split(",") if s.strip()]


def graph_error(
    exc: ApiError, *, area: str, tenant_id: str, app_id: str, roles: frozenset[str] = frozenset()
) -> ActionableError:
    """Map what Graph answered to one error code and action.

    403 naming scopes, or a token lacking the area's permission -> permissionMissing; a bare 403 Forbidden
    on deviceManagement, or 400 "Request not applicable to target tenant" -> intuneNotLicensed.
    """
    if isinstance(exc, RetriableApiError):
        return throttled("Microsoft Graph") if exc.throttled else unreachable("Microsoft Graph", str(exc))
    message = error_message(exc.body)
    intune = area in ("devices", "apps")
    if exc.status == 403:
        named = scopes_named(message)
        if named:
            granted = [s for s in named if s in roles]
            if not granted:
                return permission_missing([" or ".join(named[:2])], app_id=app_id, tenant_id=tenant_id)
        missing = missing_permissions(area, roles)
        if missing:
            return permission_missing(missing, app_id=app_id, tenant_id=tenant_id)
        if intune:
            return intune_not_licensed(tenant_id)
        return permission_missing([permissions.read_permission(area).name], app_id=app_id, tenant_id=tenant_id)
    if isinstance(exc, ContinuationRefused):
        # A continuation link outside Graph's origin (shared.http.may_carry_token): nothing was sent there,
        # and, the listing being incomplete, nothing is marked removed.
        return ActionableError(
            ErrorCode.INTERNAL,
            f"Microsoft Graph's listing of {area} in tenant {tenant_id} was not followed to the end: "
            f"{str(exc).removeprefix(exc.service + ': ')}. Nothing was sent there and nothing was marked removed.",
            "If it repeats, check for a proxy or TLS inspection between memsync and Microsoft Graph that "
            "rewrites responses; otherwise report it with the tenant id and time.",
            retriable=False,
        )
    if exc.status == 400 and intune and _NOT_APPLICABLE in message.lower():
        return intune_not_licensed(tenant_id)
    return ActionableError(
        ErrorCode.INTERNAL,
        f"Microsoft Graph refused a read of {area} in tenant {tenant_id}: HTTP {exc.status} "
        f"{message[:300]}".rstrip(),
        "memsync sent a request Graph does not accept; report this with the tenant id and time.",
        retriable=False,
    )


class GraphClient:
    """Graph reads for one tenant, each area through its own rate-limited `ApiClient`."""

    def __init__(
        self,
        base_url: str,
        *,
        directory: ApiClient,
        devices: ApiClient | None = None,
        apps: ApiClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")  # settings.graph_url + "/v1.0"
        self._directory = directory
        self._devices = devices or directory
        self._apps = apps or directory

    async def pages(
        self, api: ApiClient, path: str, params: dict[str, str] | None = None
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Each page's `value`, following `@odata.nextLink` whole until there is none."""
        url: str | None = f"{self.base_url}{path}"
        followed: set[str] = set()
        while url is not None:
            body = await api.get_json(url, params)
            params = None  # the next link already carries every query option
            if not isinstance(body, dict) or not isinstance(body.get("value", []), list):
                raise RetriableApiError(api.service, 200, f"unexpected page shape from {path}")
            yield [v for v in body.get("value", []) if isinstance(v, dict)]
            next_link = body.get("@odata.nextLink")
            if not isinstance(next_link, str) or not next_link:
                return
            # A bearer token never goes to a host other than Graph's (shared.http.may_carry_token).
            url = continuation(api, self.base_url, next_link, followed)

    @property
    def apps_api(self) -> ApiClient:
        """The rate-limited client of Intune's app endpoints (export jobs go through it too)."""
        return self._apps

    def managed_devices(
        self, select: Sequence[str] = MANAGED_DEVICE_SELECT
    ) -> AsyncIterator[list[dict[str, Any]]]:
        return self.pages(self._devices, "/deviceManagement/managedDevices",
                          {"$select": ",".join(select), "$top": PAGE_SIZE_DEVICES})

    def detected_apps(
        self, select: Sequence[str] = DETECTED_APP_SELECT
    ) -> AsyncIterator[list[dict[str, Any]]]:
        return self.pages(self._apps, "/deviceManagement/detectedApps", {"$select": ",".join(select)})

    def app_devices(self, app_id: str) -> AsyncIterator[list[dict[str, Any]]]:
        """The managed devices of one detected app (only their ids): the per-app fallback of the
        inventory export. https://learn.microsoft.com/graph/api/intune-devices-detectedapp-list-manageddevices
        """
        return self.pages(self._apps, f"/deviceManagement/detectedApps/{quote(app_id, safe='')}/managedDevices",
                          {"$select": "id"})

    async def organization(self) -> dict[str, Any] | None:
        async for page in self.pages(self._directory, "/organization",
                                     {"$select": "id,displayName,verifiedDomains,tenantType"}):
            return page[0] if page else None
        return None

    def contracts(self) -> AsyncIterator[list[dict[str, Any]]]:
        return self.pages(self._directory, "/contracts",
                          {"$select": "customerId,defaultDomainName,displayName,contractType"})

    def delegated_admin_customers(self) -> AsyncIterator[list[dict[str, Any]]]:
        return self.pages(self._directory, "/tenantRelationships/delegatedAdminCustomers")
