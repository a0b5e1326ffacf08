"""Fixtures for the local Functions host's own integration tests.

`azurite` (module): an in-memory Azurite on free ports.
`host_proc` (module): `python -m devstack.functions_host` serving tests/integration/host/testapp
against that Azurite, with function key "k". `HostProcess.output()` is everything it printed.
`queue(name)`: a sync QueueClient (raw text, no encoding policies) on that Azurite.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient

from devstack.azurite import Azurite, AzuritePorts

from .support import HostProcess, free_port, start_host


@pytest.fixture(scope="module")
def azurite() -> Iterator[Azurite]:
    ports = AzuritePorts(blob=free_port(), queue=free_port(), table=free_port())
    az = Azurite(ports)
    az.start()
    try:
        yield az
    finally:
        az.cleanup()


@pytest.fixture(scope="module")
def host_proc(azurite: Azurite) -> Iterator[HostProcess]:
    host = start_host(azurite.connection_string())
    try:
        yield host
    finally:
        rc = host.stop()
        print(f"--- host output (rc={rc}) ---\n{host.output()}")


@pytest.fixture
def queue(azurite: Azurite) -> Callable[[str], QueueClient]:
    """A sync QueueClient without encode/decode policies: the raw text on the queue."""

    def _make(name: str) -> QueueClient:
        client = QueueClient.from_connection_string(azurite.connection_string(), name)
        with contextlib.suppress(ResourceExistsError):  # already there
            client.create_queue()
        return client

    return _make
