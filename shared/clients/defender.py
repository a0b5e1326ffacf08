"""Defender for Endpoint collections of one tenant, streamed page by page: its machines
(`GET {api}/api/machines`) and the vulnerabilities on them (`/api/vulnerabilities/machinesVulnerabilities`).

`$top` may be up to 10,000; further pages come by `@odata.nextLink` when the service sends one, else by
`$skip`. For the machines a 404 means the tenant has no recently seen machines (FACTS.md), which is also
what a tenant without Defender for Endpoint gets: an empty, complete listing, with `not_found` set so the
sync can say why there is no Defender data. Any other collection's 404 is an error like the rest.
https://learn.microsoft.com/defender-endpoint/api/get-machines
https://learn.microsoft.com/defender-endpoint/api/get-all-vulnerabilities-by-machines
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from shared.errors import ActionableError, ErrorCode, permission_missing, throttled, unreachable
from shared.http import ApiClient, ApiError, FatalApiError, RetriableApiError, continuation

PAGE_SIZE = 10_000


class DefenderClient:
    def __init__(self, base_url: str, api: ApiClient, *, page_size: int = PAGE_SIZE) -> None:
        self.base_url = base_url.rstrip("/")  # settings.defender_url
        self.url = self.base_url + "/api/machines"
        self._api = api
        self._page_size = page_size
        self.not_found = False

    def machines(self) -> AsyncIterator[list[dict[str, Any]]]:
        return self.pages("/api/machines", page_size=self._page_size, empty_when_not_found=True)

    async def pages(
        self, path: str, params: dict[str, str] | None = None, *, page_size: int | None = None,
        empty_when_not_found: bool = False,
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Each page's `value` of one collection, by next link or `$skip`; with `empty_when_not_found`, a
        404 on the first page is an empty listing (and sets `not_found`)."""
        size = page_size or int((params or {}).get("$top") or self._page_size)
        first = self.base_url + path
        skip = 0
        url = first
        query: dict[str, str] | None = {**(params or {}), "$top": str(size)}
        followed: set[str] = set()
        while True:
            try:
                body = await self._api.get_json(url, query)
            except FatalApiError as exc:
                if empty_when_not_found and exc.status == 404 and skip == 0 and not followed:
                    self.not_found = True
                    return
                raise
            value = body.get("value") if isinstance(body, dict) else None
            if not isinstance(value, list):
                raise RetriableApiError(self._api.service, 200, f"unexpected page shape from {path}")
            yield [m for m in value if isinstance(m, dict)]
            next_link = body.get("@odata.nextLink")
            if isinstance(next_link, str) and next_link:
                # A bearer token never goes to a host other than Defender's (shared.http.may_carry_token).
                url, query = continuation(self._api, first, next_link, followed), None
            elif len(value) >= size and not followed:
                skip += len(value)
                query = {**(params or {}), "$top": str(size), "$skip": str(skip)}
            else:
                return


def defender_not_found(tenant_id: str) -> ActionableError:
    return ActionableError(
        ErrorCode.DEFENDER_UNAVAILABLE,
        f"Defender for Endpoint reported no machines for tenant {tenant_id} (HTTP 404): the tenant has no "
        "Defender for Endpoint licence, or no machine was seen recently. Intune devices were synced "
        "without Defender data.",
        "If the tenant should have Defender data, check its Microsoft Defender for Endpoint licence and "
        "that its devices are onboarded; otherwise no action is needed.",
        retriable=False,
    )


def defender_unavailable(
    cause: ApiError | ActionableError, *, tenant_id: str, app_id: str
) -> ActionableError:
    """Defender could not be read; devices still sync without (new) Defender data."""
    action = ("Check that the tenant has Microsoft Defender for Endpoint, and that the app "
              f"{app_id} has the WindowsDefenderATP application permission Machine.Read.All with admin "
              "consent in that tenant.")
    if isinstance(cause, ActionableError):
        detail = f"no token for the Defender API ({cause.code.value}: {cause.info.message})"
        action = cause.info.action
    elif isinstance(cause, RetriableApiError):
        detail = "it kept answering 429" if cause.throttled else f"it could not be reached ({cause})"
        action = "No action needed unless it repeats: memsync retries on the next run."
    elif cause.status == 403:
        detail = "access was refused (HTTP 403): Machine.Read.All is missing or Defender is not licensed"
    elif cause.status == 401:
        detail = "the token was refused (HTTP 401)"
    else:
        detail = f"HTTP {cause.status}"
    return ActionableError(
        ErrorCode.DEFENDER_UNAVAILABLE,
        f"Defender for Endpoint data of tenant {tenant_id} could not be read: {detail}. Intune devices "
        "were synced; their Defender fields keep the last known values.",
        action,
        retriable=False,
    )


def defender_read_error(
    exc: ApiError, *, what: str, permission: str, tenant_id: str, app_id: str, roles: frozenset[str]
) -> ActionableError:
    """What Defender answered to a read of `what` (other than the machines), as one code and action."""
    if isinstance(exc, RetriableApiError):
        return throttled("Microsoft Defender for Endpoint") if exc.throttled else unreachable(
            "Microsoft Defender for Endpoint", str(exc))
    if exc.status in (401, 403) and roles and permission not in roles:
        return permission_missing([permission], app_id=app_id, tenant_id=tenant_id)
    if exc.status in (403, 404):
        return ActionableError(
            ErrorCode.DEFENDER_UNAVAILABLE,
            f"Defender for Endpoint did not serve {what} of tenant {tenant_id} (HTTP {exc.status}): the tenant "
            "has no Defender licence that includes vulnerability management, or the read was refused.",
            f"Check the tenant's Microsoft Defender for Endpoint licence and that the app {app_id} has the "
            f"WindowsDefenderATP application permission {permission} with admin consent there.",
            retriable=False,
        )
    return ActionableError(
        ErrorCode.INTERNAL,
        f"Defender for Endpoint refused a read of {what} in tenant {tenant_id}: HTTP {exc.status}.",
        "memsync sent a request Defender does not accept; report this with the tenant id and time.",
        retriable=False,
    )
