"""`TenantTokens` under concurrency: a fresh token or a refusal never closes a credential under a caller.

Twenty concurrent registrations of one app used to end in eighteen 500s: each asked for a fresh token,
which closed the credential the others were inside. The credential here is a stand-in for azure-identity's
`ClientSecretCredential` that fails a call the way the real one does when it is closed mid-request.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
from pydantic import SecretStr

from shared import sdk
from shared.auth import AppCredential, TenantTokens
from shared.errors import ActionableError
from shared.settings import load_settings

pytestmark = pytest.mark.unit


class FakeCredential:
    built: ClassVar[list[FakeCredential]] = []
    refuse: ClassVar[bool] = False

    def __init__(self, tenant_id: str, client_id: str, secret: str, **_: Any) -> None:
        self.closed = False
        self.calls = 0
        FakeCredential.built.append(self)

    async def get_token(self, scope: str) -> Any:
        self.calls += 1
        await asyncio.sleep(0.01)  # the token request is in flight
        if self.closed:
            raise RuntimeError("Session is closed")  # what aiohttp says when its session closed under it
        if FakeCredential.refuse:
            raise sdk.ClientAuthenticationError(message="AADSTS7000215: Invalid client secret provided.")
        return SimpleNamespace(token=f"token-{id(self)}", expires_on=time.time() + 3600)

    async def close(self) -> None:
        self.closed = True


@pytest.fixture
def tokens(monkeypatch: pytest.MonkeyPatch) -> TenantTokens:
    FakeCredential.built = []
    FakeCredential.refuse = False
    monkeypatch.setattr(sdk, "ClientSecretCredential", FakeCredential)
    settings = load_settings({"AzureWebJobsStorage": "UseDevelopmentStorage=true",
                              "MEMSYNC_KEY_VAULT_URL": "https://kv.vault.azure.net"})
    return TenantTokens(settings)


APP = AppCredential(app_id="11111111-1111-1111-1111-111111111111", secret=SecretStr("s3cret-value"), label="sync")
TENANT = "22222222-2222-2222-2222-222222222222"


async def test_twenty_concurrent_fresh_tokens_all_succeed_and_every_retired_credential_is_closed(tokens):
    answers = await asyncio.gather(*(tokens.get_token(TENANT, APP, "https://graph/.default", fresh=n % 2 == 0)
                                     for n in range(20)))

    assert all(a.startswith("token-") for a in answers)
    open_ = [c for c in FakeCredential.built if not c.closed]
    assert len(open_) == 1, "only the cached credential stays open"
    assert len(FakeCredential.built) > 1, "fresh tokens came from new credentials"
    await tokens.close()
    assert all(c.closed for c in FakeCredential.built)


async def test_a_refusal_drops_only_the_refused_credential_and_never_one_in_use(tokens):
    first = await tokens.get_token(TENANT, APP, "scope")
    FakeCredential.refuse = True
    results = await asyncio.gather(*(tokens.get_token(TENANT, APP, "scope", fresh=n == 3) for n in range(8)),
                                   return_exceptions=True)
    assert first.startswith("token-")
    assert all(isinstance(r, ActionableError) for r in results), results  # refused, not "Session is closed"
    assert all(c.closed for c in FakeCredential.built), "a refused secret is not kept in memory"
