"""Integration secrets in Key Vault: the only place their values are ever stored.

Names come from the integration id and the app's role, so a worker finds a secret by integration id
alone. Tags say which integration and app a secret belongs to (no value, no hint).

Key Vault's own failures are said once, here: a vault that cannot serve now (a 5xx, 408 or 429 after the
SDK's retries, or no connection) is an `ActionableError` `unreachable`, which the API answers with 503 and
`Retry-After`; a name that is deleted but not purged (soft delete) cannot take a new version, which is
`SecretDeleted`. The API's continuation key is a secret of this vault too (`SigningKeys`).
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from pydantic import SecretStr

from shared import sdk
from shared.errors import ActionableError, ErrorCode, unreachable

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential
    from azure.keyvault.secrets.aio import SecretClient

    from shared.models import AppRole

SECRET_PREFIX = "memsync-"
# The HMAC key that signs the API's continuation tokens (docs/data-model.md): one per vault, shared by every
# instance of the app, created by the first one that needs it.
CONTINUATION_KEY_NAME = f"{SECRET_PREFIX}continuation-key"
_VAULT_DOMAINS = (".vault.azure.net", ".vault.usgovcloudapi.net", ".vault.azure.cn", ".vault.microsoftazure.de")
# Statuses after which the vault may well answer a retry: it is not the request that is wrong.
_TRANSIENT = frozenset({408, 429})
T = TypeVar("T")


def secret_name(integration_id: str, role: AppRole) -> str:
    name = f"{SECRET_PREFIX}{integration_id}-{role.value}"
    if not re.fullmatch(r"[0-9A-Za-z-]{1,127}", name):
        raise ValueError("integration id makes an invalid Key Vault secret name")
    return name


@dataclass(frozen=True)
class StoredSecret:
    """A secret version's properties; `value` only when it was read on purpose."""

    name: str
    version: str | None
    expires_on: datetime | None
    created_on: datetime | None
    tags: dict[str, str]
    enabled: bool = True


def secret_client(vault_url: str, credential: AsyncTokenCredential) -> SecretClient:
    host = urlsplit(vault_url).hostname or ""
    # The SDK checks that the auth challenge's resource matches the vault's domain; a vault that is not
    # on a Key Vault domain (the local simulator) cannot pass that check (FACTS.md).
    verify = host.endswith(_VAULT_DOMAINS)
    return sdk.SecretClient(vault_url, credential, verify_challenge_resource=verify)


class SecretDeleted(Exception):
    """Key Vault refused a new version of `name`: a secret of that name is deleted but not purged (409
    Conflict, `ObjectIsDeletedButRecoverable`), or its deletion is still under way (`ObjectIsBeingDeleted`).

    With soft delete (on for every vault) a deleted name cannot be reused until it is recovered or purged:
    https://learn.microsoft.com/azure/key-vault/general/soft-delete-overview and
    https://learn.microsoft.com/azure/key-vault/general/soft-delete-change ("You won't be able to reuse the
    name of a key vault or key vault object that exists in the soft-deleted state")."""

    def __init__(self, name: str) -> None:
        super().__init__(f"the Key Vault secret {name} is deleted but not purged")
        self.name = name


def _vault_unavailable(exc: BaseException) -> ActionableError | None:
    """The vault could not serve the request now (no answer, 5xx, 408, 429): an `unreachable` error that
    says so by status or exception type only (an SDK message may quote the request). None otherwise."""
    if isinstance(exc, sdk.ResourceNotFoundError | sdk.ResourceExistsError):
        return None  # the vault answered, and the answer is about the secret
    if isinstance(exc, sdk.HttpResponseError):
        status = exc.status_code
        if status is None or status >= 500 or status in _TRANSIENT:
            return unreachable("Azure Key Vault", f"HTTP {status}" if status else type(exc).__name__)
        return None
    if isinstance(exc, sdk.AzureError):  # ServiceRequestError, ServiceResponseError: no usable answer
        return unreachable("Azure Key Vault", type(exc).__name__)
    return None


async def _vault(call: Callable[[], Awaitable[T]]) -> T:
    try:
        return await call()
    except sdk.AzureError as exc:
        outage = _vault_unavailable(exc)
        if outage is None:
            raise
        raise outage from None


@dataclass(frozen=True)
class SecretValue:
    """One version of a secret, read on purpose: its version id and value."""

    version: str
    value: SecretStr


class SecretStore:
    def __init__(self, client: SecretClient) -> None:
        self._client = client

    async def set_secret(
        self, name: str, value: SecretStr, *, expires_on: datetime | None, tags: dict[str, str],
        content_type: str = "client-secret",
    ) -> str:
        """Store a new version; returns its version id. `SecretDeleted` when the name is soft-deleted."""
        try:
            secret = await _vault(lambda: self._client.set_secret(
                name, value.get_secret_value(), expires_on=expires_on, tags=tags, content_type=content_type
            ))
        except sdk.ResourceExistsError:
            # Setting a secret answers 409 only for a name that is deleted (or being deleted) and not purged.
            raise SecretDeleted(name) from None
        return str(secret.properties.version)

    async def get_secret(self, name: str, version: str | None = None) -> SecretStr:
        secret = await _vault(lambda: self._client.get_secret(name, version))
        return SecretStr(secret.value or "")

    async def read_version(self, name: str, version: str | None = None) -> SecretValue | None:
        """A version (the current one by default) with its id and value; None when there is none."""
        try:
            secret = await _vault(lambda: self._client.get_secret(name, version))
        except sdk.ResourceNotFoundError:
            return None
        return SecretValue(str(secret.properties.version), SecretStr(secret.value or ""))

    async def get_properties(self, name: str) -> StoredSecret | None:
        """The current version's properties; the SDK's own errors pass through (the health check names
        their type)."""
        try:
            secret = await self._client.get_secret(name)
        except sdk.ResourceNotFoundError:
            return None
        p = secret.properties
        return StoredSecret(p.name or name, p.version, p.expires_on, p.created_on, dict(p.tags or {}),
                            bool(p.enabled))

    async def list_memsync_secrets(self) -> list[StoredSecret]:
        """Properties (never values) of every integration secret's current version (names starting with
        `memsync-`, but not the continuation key, which belongs to no integration)."""
        found = []
        async for p in self._client.list_properties_of_secrets():
            if p.name and p.name.startswith(SECRET_PREFIX) and p.name != CONTINUATION_KEY_NAME:
                found.append(StoredSecret(p.name, p.version, p.expires_on, p.created_on, dict(p.tags or {}),
                                          bool(p.enabled)))
        return found

    async def delete_secret(self, name: str) -> None:
        """Soft-delete (the vault keeps it for its retention period unless purged)."""
        try:
            # The async client returns once the deletion has completed (it polls internally).
            await _vault(lambda: self._client.delete_secret(name))
        except sdk.ResourceNotFoundError:
            return

    async def close(self) -> None:
        await self._client.close()


@dataclass(frozen=True)
class SigningKey:
    """An HMAC key: the Key Vault version it came from, and its bytes (never shown)."""

    version: str
    material: bytes = field(repr=False)


class SigningKeys:
    """The HMAC key kept as the Key Vault secret `name`, read once per process and kept in memory.

    The first instance that finds no secret creates one (32 random bytes); instances that race to create
    it each add a version, then read back the current one, so they settle on the version written last.
    A key version this process does not know (another instance settled on a later one, or an operator
    added one) makes it read the current version again: at once the first time, then at most once every
    `refresh_seconds`. So every instance converges on the vault's current version, while a stream of
    made-up versions costs the vault one read per interval. A token signed under a version that is no
    longer current, and that this process never held, is refused (its list starts again). Nothing here
    logs, stores or returns the key's value.
    """

    MIN_BYTES = 32

    def __init__(
        self, store: SecretStore, name: str = CONTINUATION_KEY_NAME, *, refresh_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._name = name
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._known: dict[str, SigningKey] = {}
        self._current: SigningKey | None = None
        self._refreshed_at: float | None = None
        self._lock = asyncio.Lock()

    async def current(self) -> SigningKey:
        """The key to sign with: the vault's current version when this process first asked."""
        if self._current is not None:
            return self._current
        async with self._lock:
            if self._current is None:
                await self._read(create=True)
        assert self._current is not None
        return self._current

    async def find(self, version: str) -> SigningKey | None:
        """The key of `version`, None when the vault's current version is another one."""
        await self.current()
        if version in self._known:
            return self._known[version]
        async with self._lock:
            now = self._clock()
            if version not in self._known and (
                self._refreshed_at is None or now - self._refreshed_at >= self._refresh_seconds
            ):
                self._refreshed_at = now
                await self._read(create=False)
        return self._known.get(version)

    async def _read(self, *, create: bool) -> None:
        found = await self._store.read_version(self._name)
        if found is None and create:
            try:
                await self._store.set_secret(
                    self._name, SecretStr(secrets.token_urlsafe(self.MIN_BYTES)), expires_on=None,
                    tags={"purpose": "continuationTokens"}, content_type="hmac-sha256-key",
                )
            except SecretDeleted:
                raise self._deleted() from None
            # Read back rather than trust our own version: an instance racing us may have written after us.
            found = await self._store.read_version(self._name)
        if found is None:
            if not create:
                return  # gone since this process read it: keep signing with the key in hand
            raise unreachable("Azure Key Vault", f"the secret {self._name} vanished while it was created")
        material = found.value.get_secret_value().encode()
        if len(material) < self.MIN_BYTES:
            raise ActionableError(
                ErrorCode.INTERNAL,
                f"The Key Vault secret {self._name} is shorter than {self.MIN_BYTES} characters.",
                f"Delete and purge the secret {self._name} (memsync creates a new one), or set a random "
                f"value of at least {self.MIN_BYTES} characters; then restart the function app.",
                retriable=False,
            )
        key = SigningKey(found.version, material)
        self._known[key.version] = key
        self._current = key

    def _deleted(self) -> ActionableError:
        return ActionableError(
            ErrorCode.INTERNAL,
            f"The Key Vault secret {self._name} is deleted but not purged, so memsync cannot create it.",
            f"In the vault (Secrets > Manage deleted secrets), recover {self._name}, or purge it so that "
            "memsync creates a new one.",
            retriable=False,
        )
