"""Partner Center customers (`GET /v1/customers`), all pages; application consents in customers; and the
partner admin's delegated grants that the consents need.

Further pages: `links.next.uri` with the `MS-ContinuationToken` header that `links.next.headers` gives.
https://learn.microsoft.com/partner-center/developer/get-a-list-of-customers
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urljoin

import httpx
from pydantic import SecretStr

from shared.auth import token_claims
from shared.errors import aadsts_codes, unreachable
from shared.http import ApiClient, ContinuationRefused, FatalApiError, RetriableApiError, may_carry_token

PAGE_SIZE = 500
MAX_PAGES = 10_000  # a guard against a service that keeps sending the same link


class PartnerCenterClient:
    def __init__(self, base_url: str, api: ApiClient, *, page_size: int = PAGE_SIZE) -> None:
        self.base_url = base_url.rstrip("/")  # settings.partner_center_url
        self._api = api
        self._page_size = page_size

    def _absolute(self, uri: str) -> str:
        """A `links.next.uri` resolved as RFC 3986 resolves references against `{base}/v1/` (Partner
        Center sends `/v1/customers?...` or a path relative to v1); whether it may then carry the token
        is `may_carry_token`'s decision."""
        if any(ord(c) < 0x20 for c in uri):
            return uri  # urljoin would silently drop CR/LF/TAB; left as sent, may_carry_token refuses it
        return urljoin(self.base_url + "/v1/", uri)

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
            if not may_carry_token(self.base_url, url):
                # The one rule of every client (shared.http.may_carry_token): the token stays home.
                raise ContinuationRefused(self._api.service, 200,
                                          "links.next.uri points outside Partner Center's https origin")
            headers = {"MS-ContinuationToken": token} if token else None
        raise RetriableApiError(self._api.service, 200, "Partner Center paging did not end")

    async def create_application_consent(self, customer_tenant_id: str, body: dict[str, Any]) -> str:
        """`POST /v1/customers/{id}/applicationconsents`: "created", or "exists" when Partner Center
        answers 409 (the app already has a service principal there), which counts as success.
        Anything else raises `FatalApiError` / `RetriableApiError`.
        https://learn.microsoft.com/partner-center/developer/control-panel-vendor-apis#acquire-consent
        """
        url = f"{self.base_url}/v1/customers/{quote(customer_tenant_id, safe='')}/applicationconsents"
        try:
            await self._api.request("POST", url, json=body)
        except FatalApiError as exc:
            if exc.status == 409:
                return "exists"
            raise
        return "created"

    async def delete_application_consent(self, customer_tenant_id: str, app_id: str) -> None:
        """`DELETE .../applicationconsents/{appId}`; a consent that is not there is not an error."""
        url = (f"{self.base_url}/v1/customers/{quote(customer_tenant_id, safe='')}/applicationconsents/"
               f"{quote(app_id, safe='')}")
        try:
            await self._api.request("DELETE", url)
        except FatalApiError as exc:
            if exc.status != 404:
                raise


# -- the partner admin's delegated access (docs/gdap.md) --------------------------------------------
#
# Partner Center's application consent takes a partner *user's* token (delegated user_impersonation):
# the secure application model. memsync gets it once through Entra's device code flow and keeps the
# refresh token in Key Vault; each use redeems it for a new one (refresh tokens are single-use in spirit
# and live 90 days from their last use).
# https://learn.microsoft.com/entra/identity-platform/v2-oauth2-device-code
# https://learn.microsoft.com/partner-center/developer/partner-center-authentication


DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@dataclass(frozen=True)
class DeviceCode:
    device_code: SecretStr
    user_code: str
    verification_uri: str
    expires_in: int
    interval: int
    message: str


@dataclass(frozen=True)
class DelegatedToken:
    access_token: SecretStr
    refresh_token: SecretStr | None

    @property
    def claims(self) -> dict[str, Any]:
        return token_claims(self.access_token.get_secret_value())


class EntraGrantError(Exception):
    """Entra refused a device-code or refresh-token grant: `error` is the OAuth error
    (authorization_pending, slow_down, expired_token, invalid_grant, ...), `codes` the AADSTS numbers."""

    def __init__(self, error: str, codes: list[int], description: str) -> None:
        super().__init__(f"{error}: {description[:200]}")
        self.error = error
        self.codes = codes
        self.description = description


def user_impersonation_scope(partner_center_scope: str) -> str:
    """Partner Center's delegated scope (plus offline_access for a refresh token), of the cloud's own
    audience: `https://api.partnercenter.microsoft.com/.default` -> `.../user_impersonation`."""
    audience = partner_center_scope.removesuffix("/.default").rstrip("/")
    return f"{audience}/user_impersonation offline_access"


class DelegatedGrants:
    """The partner app's delegated grants at `{authority}/{partner tenant}/oauth2/v2.0/...`.

    The partner app is a confidential client, so its secret goes with every grant (as MSAL's
    ConfidentialClientApplication does). No retries: a failed call is reported and the person (or the
    next poll) tries again.
    """

    def __init__(self, http: httpx.AsyncClient, *, authority_host: str, tenant_id: str, client_id: str,
                 client_secret: SecretStr, scope: str) -> None:
        self._http = http
        self._base = f"{authority_host.rstrip('/')}/{quote(tenant_id, safe='')}/oauth2/v2.0"
        self._client_id = client_id
        self._secret = client_secret
        self.scope = scope

    async def _post(self, endpoint: str, form: dict[str, str]) -> dict[str, Any]:
        try:
            response = await self._http.post(f"{self._base}/{endpoint}", data=form,
                                             headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise unreachable("Microsoft Entra ID", type(exc).__name__) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise unreachable("Microsoft Entra ID", f"HTTP {response.status_code} without a JSON body")
        if response.status_code >= 400 or "error" in body:
            raise EntraGrantError(str(body.get("error", f"http{response.status_code}")), aadsts_codes(body),
                                  str(body.get("error_description", "")))
        return body

    async def start_device_code(self) -> DeviceCode:
        body = await self._post("devicecode", {"client_id": self._client_id, "scope": self.scope})
        try:
            return DeviceCode(
                device_code=SecretStr(str(body["device_code"])),
                user_code=str(body["user_code"]),
                verification_uri=str(body.get("verification_uri") or body.get("verification_url")),
                expires_in=int(body.get("expires_in", 900)),
                interval=max(1, int(body.get("interval", 5))),
                message=str(body.get("message", "")),
            )
        except (KeyError, TypeError, ValueError):
            raise EntraGrantError("invalid_response", [], "the device code response lacks its fields") from None

    def _token(self, body: dict[str, Any]) -> DelegatedToken:
        access = body.get("access_token")
        if not isinstance(access, str) or not access:
            raise EntraGrantError("invalid_response", [], "the token response holds no access_token")
        refresh = body.get("refresh_token")
        return DelegatedToken(SecretStr(access), SecretStr(refresh) if isinstance(refresh, str) and refresh
                              else None)

    async def redeem_device_code(self, device_code: SecretStr) -> DelegatedToken:
        return self._token(await self._post("token", {
            "grant_type": DEVICE_CODE_GRANT, "client_id": self._client_id,
            "client_secret": self._secret.get_secret_value(), "device_code": device_code.get_secret_value(),
        }))

    async def refresh(self, refresh_token: SecretStr) -> DelegatedToken:
        return self._token(await self._post("token", {
            "grant_type": "refresh_token", "client_id": self._client_id,
            "client_secret": self._secret.get_secret_value(),
            "refresh_token": refresh_token.get_secret_value(), "scope": self.scope,
        }))
