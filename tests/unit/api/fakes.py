"""In-memory stand-ins for the parts of `Runtime` the registration service touches.

Only Entra's token endpoint is faked in earnest (`FakeTokens`); the stores are dictionaries with the
same method names. The integration tests run the real ones against Azurite and the simulator.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import httpx
from pydantic import SecretStr

from shared.auth import AppCredential
from shared.clients.apis import Apis
from shared.errors import ActionableError, from_aadsts
from shared.models import CustomerTenant, Integration
from shared.ratelimit import RateLimits
from shared.settings import load_settings
from shared.stores.integrations import RegistrationClaim, claim_key
from shared.stores.tables import guarded_update, utcnow


def jwt_with_roles(roles: list[str]) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part({'roles': roles, 'exp': 9999999999})}.sig"


ALL_ROLES = [
    "DeviceManagementManagedDevices.Read.All",
    "DeviceManagementApps.Read.All",
    "Organization.Read.All",
    "Machine.Read.All",
]


@dataclass
class FakeTokens:
    """Entra: `secrets[app_id]` is the one value that works; `roles[(tenant, app, audience)]` what it grants;
    `aadsts[(tenant, app)]` forces an AADSTS code."""

    secrets: dict[str, str]
    roles: dict[tuple[str, str, str], list[str]] = field(default_factory=dict)
    aadsts: dict[tuple[str, str], int] = field(default_factory=dict)
    calls: list[tuple[str, str, str, bool]] = field(default_factory=list)

    async def get_token(self, tenant_id: str, app: AppCredential, scope: str, *, fresh: bool = False) -> str:
        self.calls.append((tenant_id, app.app_id, scope, fresh))
        code = self.aadsts.get((tenant_id, app.app_id))
        if code is None and self.secrets.get(app.app_id) != app.secret.get_secret_value():
            code = 7000215
        if code is not None:
            raise from_aadsts(code, app_id=app.app_id, tenant_id=tenant_id, app_label=app.label)
        audience = scope.removesuffix("/.default")
        return jwt_with_roles(self.roles.get((tenant_id, app.app_id, audience), ALL_ROLES))


@dataclass
class FakeSecrets:
    values: dict[str, list[str]] = field(default_factory=dict)
    meta: dict[str, dict[str, Any]] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    fail_set: bool = False

    async def set_secret(self, name: str, value: SecretStr, *, expires_on: Any, tags: dict[str, str]) -> str:
        if self.fail_set:
            raise ConnectionError("vault down")
        self.values.setdefault(name, []).append(value.get_secret_value())
        self.meta[name] = {"expires_on": expires_on, "tags": tags}
        return f"v{len(self.values[name])}"

    async def get_secret(self, name: str, version: str | None = None) -> SecretStr:
        return SecretStr(self.values[name][-1])

    async def delete_secret(self, name: str) -> None:
        if self.values.pop(name, None) is not None:
            self.deleted.append(name)


@dataclass
class FakeIntegrations:
    records: dict[str, tuple[str, int]] = field(default_factory=dict)  # id -> (json, etag)
    fail_create: bool = False
    claims: dict[str, RegistrationClaim] = field(default_factory=dict)  # claim_key -> claim
    _etags: int = 0

    async def create_integration(self, integration: Integration) -> None:
        if self.fail_create:
            raise ConnectionError("storage down")
        self.records[integration.id] = (integration.model_dump_json(by_alias=True), 1)

    async def get_integration(self, integration_id: str) -> Integration | None:
        found = self.records.get(integration_id)
        return None if found is None else Integration.model_validate_json(found[0])

    async def get_integration_with_etag(self, integration_id: str) -> tuple[Integration, str] | None:
        found = self.records.get(integration_id)
        return None if found is None else (Integration.model_validate_json(found[0]), str(found[1]))

    async def replace_integration_if_unchanged(self, integration: Integration, etag: str) -> bool:
        found = self.records.get(integration.id)
        if found is None or str(found[1]) != etag:
            return False
        self.records[integration.id] = (integration.model_dump_json(by_alias=True), found[1] + 1)
        return True

    async def update(self, integration_id: str, change: Any) -> Integration | None:
        return await guarded_update(lambda: self.get_integration_with_etag(integration_id),
                                    self.replace_integration_if_unchanged, change, f"integration {integration_id}")

    async def upsert_integration(self, integration: Integration) -> None:
        etag = self.records.get(integration.id, ("", 0))[1]
        self.records[integration.id] = (integration.model_dump_json(by_alias=True), etag + 1)

    async def list_integrations(self) -> list[Integration]:
        return [Integration.model_validate_json(r) for r, _ in self.records.values()]

    async def list_by_sync_app(self, sync_app_id: str) -> list[Integration]:
        return [i for i in await self.list_integrations() if i.sync_app_id.lower() == sync_app_id.lower()]

    async def delete_integration(self, integration_id: str) -> None:
        self.records.pop(integration_id, None)

    # The claim rows of `IntegrationStore`: an insert that refuses an existing key, ETag-guarded writes.
    def _claim(self, key: str, integration_id: str) -> str:
        self._etags += 1
        self.claims[key] = RegistrationClaim(integration_id, utcnow(), str(self._etags))
        return str(self._etags)

    async def create_claim(self, home_tenant_id: str, sync_app_id: str, integration_id: str) -> str | None:
        key = claim_key(home_tenant_id, sync_app_id)
        return None if key in self.claims else self._claim(key, integration_id)

    async def get_claim(self, home_tenant_id: str, sync_app_id: str) -> RegistrationClaim | None:
        return self.claims.get(claim_key(home_tenant_id, sync_app_id))

    async def replace_claim_if_unchanged(
        self, home_tenant_id: str, sync_app_id: str, integration_id: str, etag: str
    ) -> str | None:
        key = claim_key(home_tenant_id, sync_app_id)
        found = self.claims.get(key)
        return None if found is None or found.etag != etag else self._claim(key, integration_id)

    async def release_claim(self, home_tenant_id: str, sync_app_id: str, integration_id: str) -> bool:
        key = claim_key(home_tenant_id, sync_app_id)
        found = self.claims.get(key)
        if found is None or found.integration_id != integration_id:
            return False
        del self.claims[key]
        return True


@dataclass
class FakeTenants:
    tenants: dict[str, list[CustomerTenant]] = field(default_factory=dict)

    async def list_tenants(self, integration_id: str) -> list[CustomerTenant]:
        return list(self.tenants.get(integration_id, []))

    async def get_tenant(self, integration_id: str, tenant_id: str) -> CustomerTenant | None:
        return next((t for t in self.tenants.get(integration_id, []) if t.tenant_id.lower() == tenant_id.lower()),
                    None)

    async def delete_tenants(self, integration_id: str) -> None:
        self.tenants.pop(integration_id, None)


def graph_refuses(request: httpx.Request) -> httpx.Response:
    """Graph as it answers an app without Application.Read.All: the registration keeps the given date."""
    return httpx.Response(403, json={"error": {"code": "Authorization_RequestDenied",
                                               "message": "Insufficient privileges to complete the operation."}})


def fake_runtime(tokens: FakeTokens) -> Any:
    settings = load_settings(
        {
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
            "MEMSYNC_KEY_VAULT_URL": "https://kv.vault.azure.net",
        }
    )
    http = httpx.AsyncClient(transport=httpx.MockTransport(graph_refuses))
    return SimpleNamespace(
        settings=settings,
        tokens=tokens,
        secrets=FakeSecrets(),
        integrations=FakeIntegrations(),
        tenants=FakeTenants(),
        tables=None,
        http=http,
        api=Apis(settings, http, tokens, RateLimits()).api,  # type: ignore[arg-type]
    )


class Enqueued:
    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.error = error

    async def __call__(self, rt: Any, integration: Integration, trigger: str, tenant_ids: Any = None) -> int:
        self.calls.append((integration.id, trigger))
        if self.error is not None:
            raise self.error
        return 1


__all__ = ["ActionableError", "Enqueued", "FakeTokens", "fake_runtime", "jwt_with_roles"]
