"""The simulator's Key Vault refuses like Key Vault, and memsync's `SecretStore` says what each refusal means.

A name that is deleted but not purged cannot take a new version: 409, `code` Conflict, `innererror.code`
ObjectIsDeletedButRecoverable (https://learn.microsoft.com/azure/key-vault/general/soft-delete-overview;
the wire shape is the `KeyVaultError` of the Key Vault REST specification, whose inner error is spelt
`innererror`). A vault answering 5xx is `unreachable` to memsync, which the API answers with 503.
"""

from __future__ import annotations

import json

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.identity import ClientSecretCredential
from azure.identity.aio import ClientSecretCredential as AsyncClientSecretCredential
from azure.keyvault.secrets import SecretClient
from pydantic import SecretStr

from shared.clients.keyvault import SecretDeleted, SecretStore, secret_client
from shared.errors import ActionableError, ErrorCode

from .conftest import Sim

pytestmark = pytest.mark.integration
NAME = "memsync-soft-deleted-sync"


def _host(fresh: Sim) -> dict[str, str]:
    return dict(fresh.scenario()["hostIdentity"])


def test_setting_a_soft_deleted_name_answers_409_object_is_deleted_but_recoverable(fresh: Sim) -> None:
    host = _host(fresh)
    credential = ClientSecretCredential(host["tenantId"], host["clientId"], host["clientSecret"],
                                        authority=fresh.authority, disable_instance_discovery=True)
    client = SecretClient(fresh.vault, credential, verify_challenge_resource=False)
    client.set_secret(NAME, "one")
    client.begin_delete_secret(NAME).wait()
    with pytest.raises(ResourceExistsError) as refused:
        client.set_secret(NAME, "two")
    assert refused.value.status_code == 409
    # What azure-core read from the body (its OData v4 error format reads `innererror`).
    assert refused.value.error is not None
    assert refused.value.error.code == "Conflict"
    assert refused.value.error.innererror == {"code": "ObjectIsDeletedButRecoverable"}
    body = json.loads(refused.value.response.text())
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "innererror"}
    assert "deleted but recoverable state" in body["error"]["message"]
    # Recovered, the name takes versions again.
    client.begin_recover_deleted_secret(NAME).wait()
    assert client.set_secret(NAME, "three").value == "three"


async def test_secret_store_says_deleted_for_409_and_unreachable_for_5xx(fresh: Sim) -> None:
    host = _host(fresh)
    credential = AsyncClientSecretCredential(host["tenantId"], host["clientId"], host["clientSecret"],
                                             authority=fresh.authority, disable_instance_discovery=True)
    store = SecretStore(secret_client(fresh.vault, credential))
    try:
        await store.set_secret(NAME, SecretStr("one"), expires_on=None, tags={})
        await store.delete_secret(NAME)
        with pytest.raises(SecretDeleted) as deleted:
            await store.set_secret(NAME, SecretStr("two"), expires_on=None, tags={})
        assert deleted.value.name == NAME

        rule = {"service": "vault", "kind": "status", "status": 500}
        assert fresh.http.post(f"{fresh.url}/faults", json={"rules": [rule]}).status_code == 201
        for call in (
            store.set_secret("memsync-other-sync", SecretStr("x"), expires_on=None, tags={}),
            store.get_secret("memsync-other-sync"),
            store.read_version("memsync-other-sync"),
            store.delete_secret("memsync-other-sync"),
        ):
            with pytest.raises(ActionableError) as down:
                await call
            assert down.value.code == ErrorCode.UNREACHABLE and down.value.retriable
            assert "Key Vault" in down.value.info.message and "500" in down.value.info.message
    finally:
        fresh.http.delete(f"{fresh.url}/faults")
        await store.close()
        await credential.close()
