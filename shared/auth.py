"""Credentials: memsync's own identity (vault, storage) and app-only tokens in customer tenants.

memsync's own identity is the managed identity in Azure; elsewhere azure-identity's standard
AZURE_TENANT_ID / AZURE_CLIENT_ID / AZURE_CLIENT_SECRET, authenticated at MEMSYNC_AUTHORITY_HOST.
When that host is not one of Microsoft's, instance discovery is off (FACTS.md: azure-identity otherwise
calls Microsoft's discovery endpoint first, and AZURE_AUTHORITY_HOST alone does not turn that off).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from shared import sdk
from shared.errors import ActionableError, aadsts_codes, from_aadsts, unreachable

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

    from shared.settings import Settings


def host_credential(settings: Settings) -> AsyncTokenCredential:
    """memsync's own identity, for Key Vault and (without a connection string) storage."""
    discovery_off = not settings.authority_is_microsoft
    if settings.azure_client_secret and settings.azure_tenant_id and settings.azure_client_id:
        return sdk.ClientSecretCredential(
            settings.azure_tenant_id,
            settings.azure_client_id,
            settings.azure_client_secret.get_secret_value(),
            authority=settings.authority_host,
            disable_instance_discovery=discovery_off,
        )
    # In Azure: the Function App's managed identity (DefaultAzureCredential tries it first there).
    return sdk.DefaultAzureCredential(
        authority=settings.authority_host,
        managed_identity_client_id=settings.azure_client_id,
        exclude_interactive_browser_credential=True,
    )


def token_claims(access_token: str) -> dict[str, Any]:
    """The claims of a JWT access token, unverified: memsync only reads what Entra granted it.

    The token was just received over TLS from Entra; verifying its signature is the resource's job.
    """
    try:
        payload = access_token.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def token_roles(access_token: str) -> frozenset[str]:
    roles = token_claims(access_token).get("roles")
    return frozenset(r for r in roles if isinstance(r, str)) if isinstance(roles, list) else frozenset()


@dataclass(frozen=True)
class AppCredential:
    """An app registration's id and secret; the secret never leaves this object except to Entra."""

    app_id: str
    secret: SecretStr
    label: str = "app"  # "partner app" or "sync app", for messages

    @property
    def fingerprint(self) -> str:
        """Identifies the secret version in caches without holding the value."""
        return hashlib.sha256(self.secret.get_secret_value().encode()).hexdigest()[:16]

    def __repr__(self) -> str:  # never print the secret, not even masked
        return f"AppCredential(app_id={self.app_id!r}, label={self.label!r})"


class TenantTokens:
    """App-only tokens per (tenant, app, secret, scope), cached across invocations of a warm instance.

    azure-identity caches tokens inside each credential object, so keeping the credential objects is
    keeping the cache; a rotated secret has a new fingerprint and gets a new credential.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._credentials: dict[tuple[str, str, str], Any] = {}
        # Callers inside each credential's get_token now, and the credentials taken out of the cache:
        # a credential is closed only once it is out of the cache and no caller is inside it.
        self._callers: dict[int, int] = {}
        self._retired: dict[int, Any] = {}

    def _credential(self, tenant_id: str, app: AppCredential) -> Any:
        key = (tenant_id.lower(), app.app_id.lower(), app.fingerprint)
        credential = self._credentials.get(key)
        if credential is None:
            credential = sdk.ClientSecretCredential(
                tenant_id,
                app.app_id,
                app.secret.get_secret_value(),
                authority=self._settings.authority_host,
                disable_instance_discovery=not self._settings.authority_is_microsoft,
            )
            self._credentials[key] = credential
        return credential

    async def get_token(self, tenant_id: str, app: AppCredential, scope: str, *, fresh: bool = False) -> str:
        """A bearer token, or an `ActionableError` that says what Entra refused and what to do.

        Concurrent callers share one credential per (tenant, app, secret). `fresh` (and a refusal) takes
        it out of the cache so that the next caller builds a new one, and it is closed only after the last
        caller inside it has its answer: closing it under them failed their requests."""
        key = (tenant_id.lower(), app.app_id.lower(), app.fingerprint)
        if fresh:
            # The credential's cache would hand back the same token; a new object skips it.
            await self._forget(key)
        credential = self._credential(tenant_id, app)
        self._callers[id(credential)] = self._callers.get(id(credential), 0) + 1
        try:
            token = await credential.get_token(scope)
        except sdk.ClientAuthenticationError as exc:
            # A refused secret is not kept in memory for the life of the process.
            await self._forget(key, credential)
            raise _auth_error(exc, tenant_id=tenant_id, app=app, scope=scope) from None
        except sdk.ServiceRequestError as exc:
            raise unreachable("Microsoft Entra ID", type(exc).__name__) from None
        finally:
            await self._leave(credential)
        if token.expires_on < time.time():
            raise unreachable("Microsoft Entra ID", "it issued an already expired token (check the clock)")
        return str(token.token)

    async def _forget(self, key: tuple[str, str, str], credential: Any = None) -> None:
        """Take the credential of `key` out of the cache (only `credential`, when given: a caller that
        failed with an old one must not drop the new one another caller built meanwhile)."""
        current = self._credentials.get(key)
        if current is None or (credential is not None and current is not credential):
            return
        del self._credentials[key]
        self._retired[id(current)] = current
        if not self._callers.get(id(current)):
            await self._close(current)

    async def _leave(self, credential: Any) -> None:
        left = self._callers.get(id(credential), 1) - 1
        if left:
            self._callers[id(credential)] = left
            return
        self._callers.pop(id(credential), None)
        if id(credential) in self._retired:
            await self._close(credential)

    async def _close(self, credential: Any) -> None:
        self._retired.pop(id(credential), None)
        await credential.close()

    async def close(self) -> None:
        for credential in [*self._credentials.values(), *self._retired.values()]:
            await credential.close()
        self._credentials.clear()
        self._retired.clear()


TRANSIENT_OAUTH_ERRORS = frozenset({"temporarily_unavailable", "server_error"})


def _auth_error(exc: Exception, *, tenant_id: str, app: AppCredential, scope: str) -> ActionableError:
    text = str(getattr(exc, "message", "") or exc)
    response = getattr(exc, "response", None)
    body: dict[str, Any] | str = text
    if response is not None:
        try:
            parsed = response.json()
            if isinstance(parsed, dict):
                body = parsed
        except Exception:  # noqa: BLE001  # the body is a best-effort hint; the text is the fallback
            body = text
    codes = aadsts_codes(body) or aadsts_codes(text)
    # Throttled (429) or down (5xx, OAuth's `temporarily_unavailable` / `server_error`, e.g. AADSTS50196,
    # 90033) after azure-identity's own retries: an outage to retry, not a refusal a person must fix.
    # https://www.rfc-editor.org/rfc/rfc6749#section-4.1.2.1
    status = getattr(response, "status_code", None)
    error = body.get("error") if isinstance(body, dict) else None
    if status == 429 or (isinstance(status, int) and status >= 500) or error in TRANSIENT_OAUTH_ERRORS:
        code = f", AADSTS{codes[0]}" if codes else ""
        return unreachable("Microsoft Entra ID", f"it answered HTTP {status}{code}, a temporary condition")
    if codes:
        return from_aadsts(codes[0], app_id=app.app_id, tenant_id=tenant_id, app_label=app.label, resource=scope)
    return unreachable("Microsoft Entra ID", "the token request failed without an AADSTS code")
