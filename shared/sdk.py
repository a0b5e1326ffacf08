"""The Azure SDK names memsync uses, each imported on first use: the one place start-up is kept fast.

A Functions worker imports `function_app` (and so every module of memsync) before it serves anything,
on every cold start. The Azure SDKs are most of that cost (the storage queue SDK alone takes about
0.3 s to import here; `python -X importtime -c "import azure.storage.queue.aio"` shows it), and most
executions need only one or two of them. So modules import this module at the top, as they import
anything else, and write `sdk.UpdateMode`, `sdk.ResourceNotFoundError`: the SDK module behind a name
is imported when the name is first read (PEP 562's module `__getattr__`), and then kept.

    from shared import sdk

    try:
        entity = await table.get_entity(pk, rk)
    except sdk.ResourceNotFoundError:
        ...

An `except sdk.X:` clause reads `sdk.X` only when an exception reaches it. Type checkers see the real
classes through the `TYPE_CHECKING` imports below. A new SDK name is added to both lists; the unit test
`tests/unit/test_sdk.py` checks that they agree and that importing `function_app` loads none of these SDKs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from azure.core import MatchConditions as MatchConditions
    from azure.core.exceptions import AzureError as AzureError
    from azure.core.exceptions import ClientAuthenticationError as ClientAuthenticationError
    from azure.core.exceptions import HttpResponseError as HttpResponseError
    from azure.core.exceptions import ResourceExistsError as ResourceExistsError
    from azure.core.exceptions import ResourceModifiedError as ResourceModifiedError
    from azure.core.exceptions import ResourceNotFoundError as ResourceNotFoundError
    from azure.core.exceptions import ServiceRequestError as ServiceRequestError
    from azure.data.tables import EdmType as EdmType
    from azure.data.tables import TableTransactionError as TableTransactionError
    from azure.data.tables import UpdateMode as UpdateMode
    from azure.data.tables.aio import TableServiceClient as TableServiceClient
    from azure.identity.aio import ClientSecretCredential as ClientSecretCredential
    from azure.identity.aio import DefaultAzureCredential as DefaultAzureCredential
    from azure.keyvault.secrets.aio import SecretClient as SecretClient
    from azure.storage.queue import BinaryBase64DecodePolicy as BinaryBase64DecodePolicy
    from azure.storage.queue import BinaryBase64EncodePolicy as BinaryBase64EncodePolicy
    from azure.storage.queue.aio import QueueClient as QueueClient

# name -> the module that defines it
SOURCES: dict[str, str] = {
    "MatchConditions": "azure.core",
    "AzureError": "azure.core.exceptions",
    "ClientAuthenticationError": "azure.core.exceptions",
    "HttpResponseError": "azure.core.exceptions",
    "ResourceExistsError": "azure.core.exceptions",
    "ResourceModifiedError": "azure.core.exceptions",
    "ResourceNotFoundError": "azure.core.exceptions",
    "ServiceRequestError": "azure.core.exceptions",
    "EdmType": "azure.data.tables",
    "TableTransactionError": "azure.data.tables",
    "UpdateMode": "azure.data.tables",
    "TableServiceClient": "azure.data.tables.aio",
    "ClientSecretCredential": "azure.identity.aio",
    "DefaultAzureCredential": "azure.identity.aio",
    "SecretClient": "azure.keyvault.secrets.aio",
    "BinaryBase64DecodePolicy": "azure.storage.queue",
    "BinaryBase64EncodePolicy": "azure.storage.queue",
    "QueueClient": "azure.storage.queue.aio",
}

__all__ = sorted(SOURCES)


def __getattr__(name: str) -> Any:
    source = SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}; add it to SOURCES")
    value = getattr(importlib.import_module(source), name)
    globals()[name] = value  # read once; later reads are plain attribute reads
    return value
