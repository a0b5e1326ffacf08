"""Integration secrets in Key Vault: the only place their values are ever stored.

Names come from the integration id and the app's role, so a worker finds a secret by integration id
alone. Tags say which integration and app a secret belongs to (no value, no hint).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pydantic import SecretStr

from shared import sdk

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential
    from azure.keyvault.secrets.aio import SecretClient

    from shared.models import AppRole

SECRET_PREFIX = "memsync-"
_VAULT_DOMAINS = (".vault.azure.net", ".vault.usgovcloudapi.net", ".vault.azure.cn", ".vault.microsoftazure.de")


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


class SecretStore:
    def __init__(self, client: SecretClient) -> None:
        self._client = client

    async def set_secret(
        self, name: str, value: SecretStr, *, expires_on: datetime | None, tags: dict[str, str]
    ) -> str:
        """Store a new version; returns its version id."""
        secret = await self._client.set_secret(
            name, value.get_secret_value(), expires_on=expires_on, tags=tags, content_type="client-secret"
        )
        return str(secret.properties.version)

    async def get_secret(self, name: str, version: str | None = None) -> SecretStr:
        secret = await self._client.get_secret(name, version)
        return SecretStr(secret.value or "")

    async def get_properties(self, name: str) -> StoredSecret | None:
        try:
            secret = await self._client.get_secret(name)
        except sdk.ResourceNotFoundError:
            return None
        p = secret.properties
        return StoredSecret(p.name or name, p.version, p.expires_on, p.created_on, dict(p.tags or {}),
                            bool(p.enabled))

    async def list_memsync_secrets(self) -> list[StoredSecret]:
        """Properties (never values) of every memsync secret's current version."""
        found = []
        async for p in self._client.list_properties_of_secrets():
            if p.name and p.name.startswith(SECRET_PREFIX):
                found.append(StoredSecret(p.name, p.version, p.expires_on, p.created_on, dict(p.tags or {}),
                                          bool(p.enabled)))
        return found

    async def delete_secret(self, name: str) -> None:
        """Soft-delete (the vault keeps it for its retention period unless purged)."""

        try:
            # The async client returns once the deletion has completed (it polls internally).
            await self._client.delete_secret(name)
        except sdk.ResourceNotFoundError:
            return

    async def close(self) -> None:
        await self._client.close()
