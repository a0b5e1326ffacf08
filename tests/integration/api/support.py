"""Helpers for the API's integration tests: a client that remembers every response, polling, leak scans."""

from __future__ import annotations

import base64
import time
from typing import Any

import httpx

from devstack.stack import DevStack

SETTLED = {"ok", "error", "excluded"}


class Recorder:
    """Every response body and header the API sent during a module, for the leak scan."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, response: httpx.Response) -> None:
        response.read()
        self.seen.append(f"{response.request.method} {response.request.url.path} {response.status_code}")
        self.seen.extend(f"{k}: {v}" for k, v in response.headers.items())
        self.seen.append(response.text)


def api_client(stack: DevStack, recorder: Recorder) -> httpx.Client:
    return stack.api(event_hooks={"response": [recorder]})


def wait_for_tenants(api: httpx.Client, integration_id: str, *, timeout: float = 120) -> list[dict[str, Any]]:
    """Poll GET .../tenants until every tenant has settled (ok, error or excluded)."""
    deadline = time.monotonic() + timeout
    tenants: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        response = api.get(f"/integrations/{integration_id}/tenants", params={"top": 1000})
        assert response.status_code == 200, response.text
        tenants = response.json()["value"]
        if tenants and all(t["status"] in SETTLED for t in tenants):
            return tenants
        time.sleep(0.5)
    raise AssertionError(
        f"tenants did not settle in {timeout:.0f} s: {[(t['tenantId'], t['status']) for t in tenants]}"
    )


def wait_for_tenant(
    api: httpx.Client, integration_id: str, tenant_id: str, *, after: str | None = None, timeout: float = 120
) -> dict[str, Any]:
    """Poll until one tenant has settled with a sync that finished after `after` (any, when None)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = api.get(f"/integrations/{integration_id}/tenants", params={"top": 1000})
        assert response.status_code == 200, response.text
        for tenant in response.json()["value"]:
            finished = tenant["lastSyncFinishedAt"]
            if (
                tenant["tenantId"] == tenant_id
                and tenant["status"] in SETTLED
                and finished
                and (after is None or finished > after)
            ):
                return dict(tenant)
        time.sleep(0.5)
    raise AssertionError(f"tenant {tenant_id} did not finish a sync in {timeout:.0f} s")


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    doc = response.json()
    assert set(doc) == {"type", "title", "status", "detail", "errors"}
    for error in doc["errors"]:
        assert set(error) == {"field", "code", "message", "action"}
    return dict(doc)


async def stored_texts(runtime: Any) -> list[str]:
    """Every table entity and queue message memsync wrote, as text."""
    from azure.storage.queue.aio import QueueServiceClient

    from shared.stores.tables import ALL_TABLES

    texts: list[str] = []
    for name in ALL_TABLES:
        async for entity in runtime.tables.client(name).list_entities():
            texts.append(repr(dict(entity)))
    conn = runtime.settings.storage_connection_string.get_secret_value()
    async with QueueServiceClient.from_connection_string(conn) as queues:
        async for queue in queues.list_queues():
            client = queues.get_queue_client(queue.name)
            for message in await client.peek_messages(max_messages=32):
                texts.append(str(message.content))
                try:
                    texts.append(base64.b64decode(message.content).decode(errors="replace"))
                except ValueError:
                    pass
    return texts


def leaks(texts: list[str], secrets: set[str]) -> list[str]:
    found = []
    for secret in secrets:
        # A secret could also show up URL- or JSON-escaped; its middle part is enough to catch it.
        probes = {secret, secret[4:-4]} if len(secret) >= 16 else {secret}
        for text in texts:
            if any(p in text for p in probes):
                found.append(f"{secret[:3]}... in {text[:80]!r}")
                break
    return found
