"""Partner Center customers (`GET /v1/customers`), all pages.

Further pages: `links.next.uri` with the `MS-ContinuationToken` header that `links.next.headers` gives.
https://learn.microsoft.com/partner-center/developer/get-a-list-of-customers
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from shared.http import ApiClient, RetriableApiError

PAGE_SIZE = 500
MAX_PAGES = 10_000  # a guard against a service that keeps sending the same link


class PartnerCenterClient:
    def __init__(self, base_url: str, api: ApiClient, *, page_size: int = PAGE_SIZE) -> None:
        self.base_url = base_url.rstrip("/")  # settings.partner_center_url
        self._api = api
        self._page_size = page_size

    def _absolute(self, uri: str) -> str:
        if uri.startswith(("https://", "http://")):
            return uri
        if uri.startswith("/v1/"):
            return self.base_url + uri
        return f"{self.base_url}/v1/{uri.lstrip('/')}"

    async def customers(self) -> AsyncIterator[list[dict[str, Any]]]:
        url = f"{self.base_url}/v1/customers"
        params: dict[str, str] | None = {"size": str(self._page_size)}
        headers: dict[str, str] | None = None
        seen: set[tuple[str, str]] = set()
        for _ in range(MAX_PAGES):
            response = await self._api.request("GET", url, params=params, headers=headers)
            try:
                body = response.json()
            except ValueError as exc:
                raise RetriableApiError(self._api.service, response.status_code,
                                        "response was not JSON") from exc
            items = body.get("items") if isinstance(body, dict) else None
            if not isinstance(items, list):
                raise RetriableApiError(self._api.service, 200, "unexpected page shape from /v1/customers")
            yield [i for i in items if isinstance(i, dict)]
            nxt = (body.get("links") or {}).get("next") if isinstance(body.get("links"), dict) else None
            if not isinstance(nxt, dict) or not isinstance(nxt.get("uri"), str):
                return
            token = ""
            for header in nxt.get("headers") or []:
                if isinstance(header, dict) and str(header.get("key", "")).lower() == "ms-continuationtoken":
                    token = str(header.get("value", ""))
            key = (nxt["uri"], token)
            if key in seen:
                raise RetriableApiError(self._api.service, 200, "Partner Center repeated a page link")
            seen.add(key)
            url, params = self._absolute(nxt["uri"]), None
            headers = {"MS-ContinuationToken": token} if token else None
        raise RetriableApiError(self._api.service, 200, "Partner Center paging did not end")
