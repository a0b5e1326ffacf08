"""Defender for Endpoint machines of one tenant (`GET {api}/api/machines`), streamed page by page.

`$top` may be up to 10,000; further pages come by `@odata.nextLink` when the service sends one, else by
`$skip`. A 404 means the tenant has no recently seen machines (FACTS.md), which is also what a tenant
without Defender for Endpoint gets: an empty, complete listing, with `not_found` set so the sync can
say why there is no Defender data.
https://learn.microsoft.com/defender-endpoint/api/get-machines
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from shared.errors import ActionableError, ErrorCode
from shared.http import ApiClient, ApiError, FatalApiError, RetriableApiError, continuation

PAGE_SIZE = 10_000


class DefenderClient:
    def __init__(self, base_url: str, api: ApiClient, *, page_size: int = PAGE_SIZE) -> None:
        self.url = base_url.rstrip("/") + "/api/machines"  # settings.defender_url + "/api/machines"
        self._api = api
        self._page_size = page_size
        self.not_found = False

    async def machines(self) -> AsyncIterator[list[dict[str, Any]]]:
        skip = 0
        url = self.url
        params: dict[str, str] | None = {"$top": str(self._page_size)}
        followed: set[str] = set()
        while True:
            try:
                body = await self._api.get_json(url, params)
            except FatalApiError as exc:
                if exc.status == 404 and skip == 0 and not followed:
                    self.not_found = True
                    return
                raise
            value = body.get("value") if isinstance(body, dict) else None
            if not isinstance(value, list):
                raise RetriableApiError(self._api.service, 200, "unexpected page shape from /api/machines")
            page = [m for m in value if isinstance(m, dict)]
            yield page
            next_link = body.get("@odata.nextLink")
            if isinstance(next_link, str) and next_link:
                url, params = continuation(self._api, self.url, next_link, followed), None
            elif len(value) >= self._page_size and not followed:
                skip += len(value)
                params = {"$top": str(self._page_size), "$skip": str(skip)}
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
