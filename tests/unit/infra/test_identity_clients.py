"""The code paths the Azure footprint relies on: with only the identity-based settings that Bicep sets,
memsync reaches its storage and vault as its managed identity; with a connection string (Azurite), no
credential touches storage.

The clients are real azure-sdk async clients, inspected without sending anything: which endpoint they
address, which credential signs their requests, for which scope.
"""

from __future__ import annotations

import pytest
from azure.core.credentials import AzureNamedKeyCredential
from azure.identity.aio import ClientSecretCredential, DefaultAzureCredential, ManagedIdentityCredential

from shared.auth import host_credential
from shared.clients.keyvault import secret_client
from shared.settings import SYNC_QUEUE, load_settings
from shared.stores.queues import queue_client
from shared.stores.tables import table_service

pytestmark = pytest.mark.unit

IDENTITY_ONLY = {"AzureWebJobsStorage__accountName": "acct", "MEMSYNC_KEY_VAULT_URL": "https://kv.vault.azure.net"}
AZURITE = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "MEMSYNC_KEY_VAULT_URL": "https://kv.vault.azure.net"}


def pipeline_policies(client):
    """The policies of an azure-core pipeline, outermost first (the SDKs keep the pipeline private)."""
    return list(client._client._client._pipeline._impl_policies)


def bearer_policy(client):
    policies = [p for p in pipeline_policies(client) if hasattr(p, "_credential") and hasattr(p, "_scopes")]
    assert len(policies) == 1, [type(p).__name__ for p in pipeline_policies(client)]
    return policies[0]


@pytest.fixture
async def managed_identity():
    credential = host_credential(load_settings(IDENTITY_ONLY))
    yield credential
    await credential.close()


async def test_without_a_client_secret_memsync_is_its_managed_identity(managed_identity):
    assert isinstance(managed_identity, DefaultAzureCredential)
    # In Azure, DefaultAzureCredential reaches the Function App's identity through ManagedIdentityCredential
    # (App Service's IDENTITY_ENDPOINT); no AZURE_CLIENT_ID, so the system-assigned one.
    assert any(isinstance(c, ManagedIdentityCredential) for c in managed_identity.credentials)


async def test_tables_use_the_account_endpoint_and_the_managed_identity(managed_identity):
    service = table_service(load_settings(IDENTITY_ONLY), managed_identity)
    try:
        assert service.url == "https://acct.table.core.windows.net"
        assert service.credential is managed_identity
        policy = bearer_policy(service)
        assert policy._credential is managed_identity
        assert policy._scopes == ("https://storage.azure.com/.default",)
    finally:
        await service.close()


async def test_the_queue_uses_the_account_endpoint_and_the_managed_identity(managed_identity):
    client = queue_client(load_settings(IDENTITY_ONLY), managed_identity)
    try:
        assert client.url == f"https://acct.queue.core.windows.net/{SYNC_QUEUE}"
        assert client.queue_name == SYNC_QUEUE
        assert client.credential is managed_identity
    finally:
        await client.close()


async def test_service_uris_from_bicep_win_over_the_public_cloud_default(managed_identity):
    """Bicep sets the service URIs from the cloud's storage suffix (here: Azure Government)."""
    settings = load_settings({
        **IDENTITY_ONLY,
        "AzureWebJobsStorage__tableServiceUri": "https://acct.table.core.usgovcloudapi.net",
        "AzureWebJobsStorage__queueServiceUri": "https://acct.queue.core.usgovcloudapi.net",
    })
    service = table_service(settings, managed_identity)
    client = queue_client(settings, managed_identity)
    try:
        assert service.url == "https://acct.table.core.usgovcloudapi.net"
        assert client.url == f"https://acct.queue.core.usgovcloudapi.net/{SYNC_QUEUE}"
    finally:
        await service.close()
        await client.close()


async def test_the_vault_client_keeps_challenge_resource_verification_on_a_real_vault(managed_identity):
    client = secret_client("https://kv.vault.azure.net", managed_identity)
    try:
        assert client.vault_url == "https://kv.vault.azure.net"
        policy = bearer_policy(client)
        assert policy._credential is managed_identity
        assert policy._verify_challenge_resource is True
    finally:
        await client.close()


@pytest.mark.parametrize("vault_url", ["https://kv.vault.usgovcloudapi.net", "https://kv.vault.azure.cn"])
async def test_sovereign_vaults_are_real_vaults_too(managed_identity, vault_url):
    client = secret_client(vault_url, managed_identity)
    try:
        assert bearer_policy(client)._verify_challenge_resource is True
    finally:
        await client.close()


async def test_identity_based_storage_without_a_credential_is_refused():
    settings = load_settings(IDENTITY_ONLY)
    with pytest.raises(ValueError, match="credential"):
        table_service(settings, None)
    with pytest.raises(ValueError, match="credential"):
        queue_client(settings, None)


async def test_with_a_connection_string_no_credential_is_used_for_storage(managed_identity):
    settings = load_settings(AZURITE)
    # Even when handed the identity (Runtime passes None, but a caller might not), storage keeps the key.
    for credential in (None, managed_identity):
        service = table_service(settings, credential)
        client = queue_client(settings, credential)
        try:
            assert service.url == "http://127.0.0.1:10002/devstoreaccount1"
            assert isinstance(service.credential, AzureNamedKeyCredential)
            assert not [p for p in pipeline_policies(service) if getattr(p, "_credential", None) is not None]
            assert client.url == f"http://127.0.0.1:10001/devstoreaccount1/{SYNC_QUEUE}"
            assert client.credential is not managed_identity
            assert type(client.credential).__name__ == "SharedKeyCredentialPolicy"
        finally:
            await service.close()
            await client.close()


async def test_outside_azure_the_standard_variables_make_a_client_secret_credential():
    credential = host_credential(load_settings({
        **IDENTITY_ONLY,
        "AZURE_TENANT_ID": "00000000-0000-0000-0000-000000000001",
        "AZURE_CLIENT_ID": "00000000-0000-0000-0000-000000000002",
        "AZURE_CLIENT_SECRET": "not-a-real-secret",
    }))
    try:
        assert isinstance(credential, ClientSecretCredential)
    finally:
        await credential.close()
