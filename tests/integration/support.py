"""Helpers shared by the integration tests.

- API: a client that records every response (`Recorder`, `api_client`), polling until tenants settle,
  problem-document checks.
- Sync: integrations stored without the API (`store_integration`), jobs, assets read back through the
  store's paged reads, the simulator's ground truth and request log, field-by-field comparisons.
- Secrets: `leaks(texts, secrets)` and the texts a stack produced: its processes' logs and workdir,
  every table entity, queue message and blob in its Azurite (`stack_texts`, `storage_texts`), plus the
  async `stored_texts(runtime)` kept for the API tests.
- Stacks: `start_stack` (for modules that need their own stack, e.g. persistent storage) and
  `SecondHost`, another Functions host process on the same Azurite and simulator.
- Figures: `figure(request, name, n)` attaches a count to the test's report, for `make reliability`.

`tests/integration/api/support.py` and `tests/integration/sync/support.py` re-export their part.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit
from xml.etree import ElementTree

import httpx
from pydantic import SecretStr

from devstack.azurite import DEV_ACCOUNT_KEY, DEV_ACCOUNT_NAME
from devstack.stack import REPO_ROOT, DevStack, StackPorts, free_port
from shared.clients.keyvault import secret_name
from shared.http import CallStats
from shared.models import AppRole, Integration, IntegrationKind, SecretRef
from shared.services.fanout import discover_customers, record_tenants
from shared.services.tenant_sync import sync_tenant
from shared.stores.assets import AssetStore
from shared.stores.queues import SyncJob

ARTIFACTS = REPO_ROOT / "test-output"
SYNC_QUEUE = "memsync-sync"
POISON_QUEUE = "memsync-sync-poison"

# ================================================================== API


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
    return stack.api(event_hooks={"response": [recorder]})  # type: ignore[no-any-return]


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


# ================================================================== sync

# In a list response Intune gives 0 / null for these (FACTS.md); memsync stores what the list says.
LIST_ONLY_FIELDS = {"physicalMemoryInBytes", "ethernetMacAddress"}
PLAIN_FIELDS = (
    "deviceName", "manufacturer", "model", "operatingSystem", "osVersion", "complianceState",
    "managementAgent", "enrolledDateTime", "lastSyncDateTime", "userPrincipalName", "azureADDeviceId",
    "totalStorageSpaceInBytes", "freeStorageSpaceInBytes", "wiFiMacAddress", "imei", "isEncrypted",
)
ZERO_GUID = "00000000-0000-0000-0000-000000000000"
DATE_FIELDS = frozenset({"enrolledDateTime", "lastSyncDateTime"})


def instant(text: Any) -> Any:
    """A date-time string as the instant it names, to microseconds (Table Storage's DateTime precision);
    None for a date before 1601 (Intune's 0001-01-01 "never"); other values as they are."""
    if not isinstance(text, str):
        return text
    head, dot, rest = text.rstrip("Z").partition(".")
    digits = "".join(c for c in rest if c.isdigit())
    zone = rest[len(digits):] if dot else ""
    if not zone and "+" in head[10:]:
        head, zone = head[:head.rindex("+")], head[head.rindex("+"):]
    moment = datetime.fromisoformat(head + (("." + digits[:6]) if digits else "") + (zone or "+00:00"))
    return None if moment.year < 1601 else moment.astimezone(UTC)


async def store_integration(rt: Any, registration: dict[str, Any]) -> Integration:
    """What registration stores, without the HTTP API (and without queueing a sync)."""
    integration_id = str(uuid.uuid4())
    multi = registration["kind"] == "multiTenant"
    refs = []
    roles = [(AppRole.SYNC, registration["syncAppId"], registration["syncAppSecret"])]
    if multi:
        roles.append((AppRole.PARTNER, registration["partnerAppId"], registration["partnerAppSecret"]))
    for role, app_id, value in roles:
        name = secret_name(integration_id, role)
        version = await rt.secrets.set_secret(name, SecretStr(value), expires_on=None,
                                              tags={"integrationId": integration_id, "role": role.value})
        refs.append(SecretRef(name=name, role=role, app_id=app_id, version=version))
    integration = Integration(
        id=integration_id,
        kind=IntegrationKind(registration["kind"]),
        display_name=registration["displayName"],
        partner_tenant_id=registration.get("partnerTenantId"),
        tenant_id=registration.get("tenantId"),
        partner_app_id=registration.get("partnerAppId"),
        sync_app_id=registration["syncAppId"],
        include_defender=registration.get("includeDefender", True),
        secrets=refs,
        created_at=datetime.now(UTC),
    )
    await rt.integrations.create_integration(integration)
    return integration


def job(integration: Integration, tenant_id: str, run_id: str | None = None, trigger: str = "manual") -> SyncJob:
    return SyncJob.model_validate({"integrationId": integration.id, "tenantId": tenant_id,
                                   "runId": run_id or str(uuid.uuid4()), "trigger": trigger})


async def all_assets(rt: Any, kind: str, integration_id: str, tenant_id: str, *, top: int = 7,
                     **filters: Any) -> dict[str, dict[str, Any]]:
    """Every stored asset of one entity, by id, read through the paged store the API lists with (a small
    `top` exercises the continuation); `filters` are the entity's declared list filters."""
    store = AssetStore(rt.tables)
    out: dict[str, dict[str, Any]] = {}
    token = None
    while True:
        page, token = await store.list_assets(kind, integration_id, tenant_id, top=top, continuation=token,
                                              filters=filters)
        for asset in page:
            assert asset["id"] not in out, f"a {kind} item appeared on two pages"
            out[asset["id"]] = asset
        if token is None:
            return out


async def all_devices(rt: Any, integration_id: str, tenant_id: str, *, removed: bool | None = False,
                      top: int = 7) -> dict[str, dict[str, Any]]:
    return await all_assets(rt, "devices", integration_id, tenant_id, top=top, removed=removed)


async def all_software(rt: Any, integration_id: str, tenant_id: str, *, top: int = 5) -> dict[str, dict[str, Any]]:
    return await all_assets(rt, "software", integration_id, tenant_id, top=top)


async def sync_tenants(rt: Any, registration: dict[str, Any], tenant_ids: list[str]) -> tuple[Integration, list[Any]]:
    """A registration stored (not through the API), its customers discovered and recorded, and the named
    tenants synced one after the other; the integration and each tenant's `SyncResult`."""
    integration = await store_integration(rt, registration)
    await record_tenants(rt, integration, await discover_customers(rt, integration, CallStats()))
    return integration, [await sync_tenant(rt, job(integration, tid)) for tid in tenant_ids]


def truth(stack: Any, tenant_id: str) -> dict[str, Any]:
    with stack.sim() as sim:
        response = sim.get(f"/tenants/{tenant_id}/truth")
        response.raise_for_status()
        return dict(response.json())


def sim_call(stack: Any, method: str, path: str, **kwargs: Any) -> Any:
    with stack.sim() as sim:
        response = sim.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None


def requests_since(stack: Any, seq: int, tenant_id: str | None = None) -> list[dict[str, Any]]:
    params = {"since": str(seq)}
    if tenant_id:
        params["tenantId"] = tenant_id
    with stack.sim() as sim:
        return list(sim.get("/requests", params=params).json()["value"])


def last_seq(stack: Any) -> int:
    with stack.sim() as sim:
        return int(sim.get("/requests", params={"since": "999999999"}).json()["lastSeq"])


DEVICE_DISPLAY_FIELDS = frozenset({"deviceName", "manufacturer", "model", "userPrincipalName"})
APP_DISPLAY_FIELDS = frozenset({"displayName", "publisher"})


def shown(value: Any) -> Any:
    """What memsync is documented to store of display text (shared/mapping/text.py, written out here
    independently): lone surrogates become U+FFFD, and text over 1,024 characters is cut to 1,023 and "…"."""
    if not isinstance(value, str):
        return value
    value = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in value)
    return value if len(value) <= 1024 else value[:1023] + "…"


def assert_devices_match_truth(stored: dict[str, dict[str, Any]], tenant_truth: dict[str, Any],
                               *, include_defender: bool) -> None:
    """Field by field, every device the simulator holds against what memsync stored."""
    raw_devices = {d["id"]: d for d in tenant_truth["managedDevices"]}
    assert set(stored) == set(raw_devices), (
        f"lost: {sorted(set(raw_devices) - set(stored))[:5]}, extra: {sorted(set(stored) - set(raw_devices))[:5]}"
    )
    machines: dict[str, dict[str, Any]] = {}
    if include_defender and tenant_truth["tenant"]["defenderLicensed"]:
        for m in tenant_truth["machines"]:
            aad = (m.get("aadDeviceId") or "").lower()
            if aad and aad != ZERO_GUID and (aad not in machines or m["lastSeen"] > machines[aad]["lastSeen"]):
                machines[aad] = m
    for device_id, raw in raw_devices.items():
        device = stored[device_id]
        for name in PLAIN_FIELDS:
            want = shown(raw.get(name)) if name in DEVICE_DISPLAY_FIELDS else raw.get(name)
            if name in DATE_FIELDS:  # stored as DateTime: the same instant, shown as ISO 8601 UTC
                assert instant(device[name]) == instant(want), (device_id, name, device[name], want)
                continue
            assert device[name] == want, (device_id, name, device[name], raw.get(name))
        assert device["ownerType"] == raw.get("managedDeviceOwnerType"), device_id
        serial = (raw.get("serialNumber") or "").strip().upper() or None
        assert device["serialNumber"] == serial, device_id
        assert device["removedAt"] is None and device["firstSeenAt"] and device["lastSeenAt"]
        machine = machines.get((raw.get("azureADDeviceId") or "").lower())
        if machine is None:
            assert device["defender"] is None, device_id
        else:
            assert {**device["defender"], "lastSeen": instant(device["defender"]["lastSeen"])} == {
                "machineId": machine["id"], "healthStatus": machine.get("healthStatus"),
                "riskScore": machine.get("riskScore"), "exposureLevel": machine.get("exposureLevel"),
                "onboardingStatus": machine.get("onboardingStatus"), "lastSeen": instant(machine.get("lastSeen")),
            }, device_id


def assert_software_matches_truth(stored: dict[str, dict[str, Any]], tenant_truth: dict[str, Any]) -> None:
    raw_apps = {a["id"]: a for a in tenant_truth["detectedApps"]}
    assert set(stored) == set(raw_apps)
    for app_id, raw in raw_apps.items():
        for name in ("displayName", "version", "publisher", "platform", "sizeInByte", "deviceCount"):
            want = shown(raw.get(name)) if name in APP_DISPLAY_FIELDS else raw.get(name)
            assert stored[app_id][name] == want, (app_id, name)


async def wait_for(predicate: Any, seconds: float = 120.0, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        result = await predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(interval)


# ================================================================== secrets


def leaks(texts: Iterable[str], secrets: set[str]) -> list[str]:
    """Where any of `secrets` occurs in `texts` (the secret itself is never repeated in the finding)."""
    texts = list(texts)
    found = []
    for secret in secrets:
        # A secret could also show up URL- or JSON-escaped; its middle part is enough to catch it.
        probes = {secret, secret[4:-4]} if len(secret) >= 16 else {secret}
        probes |= {quote(secret, safe=""), base64.b64encode(secret.encode()).decode()}
        for text in texts:
            if any(p in text for p in probes):
                found.append(f"{secret[:3]}... in {text[:80]!r}")
                break
    return found


async def stored_texts(runtime: Any) -> list[str]:
    """Every table entity and (visible, first 32 per queue) queue message memsync wrote, as text."""
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
                texts.extend(_message_texts(str(message.content)))
    return texts


def _message_texts(content: str) -> list[str]:
    out = [content]
    with contextlib.suppress(ValueError):
        out.append(base64.b64decode(content, validate=True).decode(errors="replace"))
    return out


def storage_texts(connection_string: str, *, drain_queues: bool = False) -> list[str]:
    """Every table entity, queue message and blob in one storage account (Azurite), as text.

    Peeking sees at most 32 visible messages per queue; with `drain_queues` every visible message is
    received instead (use it only when nothing consumes the queues any more: it bumps dequeue counts).
    """
    from azure.data.tables import TableServiceClient
    from azure.storage.queue import QueueServiceClient

    texts: list[str] = []
    with TableServiceClient.from_connection_string(connection_string) as tables:
        for table in tables.list_tables():
            texts.append(table.name)
            for entity in tables.get_table_client(table.name).list_entities():
                texts.append(repr(dict(entity)))
    with QueueServiceClient.from_connection_string(connection_string) as queues:
        for queue in queues.list_queues():
            client = queues.get_queue_client(queue.name)
            if drain_queues:
                for message in client.receive_messages(messages_per_page=32, visibility_timeout=300):
                    texts.extend(_message_texts(str(message.content)))
            else:
                for message in client.peek_messages(max_messages=32):
                    texts.extend(_message_texts(str(message.content)))
    texts.extend(blob_texts(connection_string))
    return texts


def _connection_parts(connection_string: str) -> dict[str, str]:
    return dict(p.split("=", 1) for p in connection_string.split(";") if "=" in p)


def _shared_key_get(url: str, account: str, key: str, client: httpx.Client) -> httpx.Response:
    """A GET signed with the account key (Shared Key), as the Storage SDKs sign it.
    https://learn.microsoft.com/rest/api/storageservices/authorize-with-shared-key
    """
    date = formatdate(usegmt=True)
    headers = {"x-ms-date": date, "x-ms-version": "2021-08-06"}
    parts = urlsplit(url)
    resource = f"/{account}{parts.path}"
    params = sorted(
        (k.lower(), v) for k, _, v in (q.partition("=") for q in parts.query.split("&") if q)
    )
    for name, value in params:
        resource += f"\n{name}:{httpx.URL('?' + name + '=' + value).params[name]}"
    canonical_headers = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()))
    to_sign = "GET\n" + "\n" * 11 + canonical_headers + resource
    signature = base64.b64encode(
        hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest()
    ).decode()
    headers["Authorization"] = f"SharedKey {account}:{signature}"
    return client.get(url, headers=headers)


def blob_texts(connection_string: str) -> list[str]:
    """Names and contents of every blob (no blob SDK in the venv: three signed REST calls)."""
    parts = _connection_parts(connection_string)
    endpoint = parts.get("BlobEndpoint")
    if not endpoint:
        return []
    account = parts.get("AccountName", DEV_ACCOUNT_NAME)
    key = parts.get("AccountKey", DEV_ACCOUNT_KEY)
    texts: list[str] = []
    with httpx.Client(timeout=10) as client:
        listing = _shared_key_get(f"{endpoint.rstrip('/')}/?comp=list", account, key, client)
        listing.raise_for_status()
        for container in ElementTree.fromstring(listing.content).iter("Name"):
            name = container.text or ""
            blobs = _shared_key_get(f"{endpoint.rstrip('/')}/{name}?comp=list&restype=container",
                                    account, key, client)
            blobs.raise_for_status()
            for blob in ElementTree.fromstring(blobs.content).iter("Blob"):
                blob_name = blob.findtext("Name") or ""
                texts.append(f"{name}/{blob_name}")
                body = _shared_key_get(f"{endpoint.rstrip('/')}/{name}/{quote(blob_name)}", account, key, client)
                texts.append(body.content.decode(errors="replace"))
    return texts


def workdir_texts(workdir: Path) -> list[str]:
    """Every text file a stack wrote to its workdir (logs, env files), not the CA's private keys."""
    texts = []
    for path in sorted(workdir.rglob("*")):
        if path.is_file() and path.suffix not in (".key",) and path.stat().st_size < 64 * 1024**2:
            texts.append(f"{path.name}\n" + path.read_text(errors="replace"))
    return texts


def stack_texts(stack: DevStack, *, drain_queues: bool = False) -> list[str]:
    """Everything a stack produced: its processes' logs and every table, queue and blob in its Azurite.

    The simulator's env file (cloudsim.env) names memsync's own host identity secret on purpose: it is the
    local stand-in for an app setting. It is left out; the host's identity secret must appear nowhere else.
    """
    texts = [t for t in workdir_texts(stack.workdir) if not t.startswith("cloudsim.env\n")]
    if stack.azurite.running:
        texts.extend(storage_texts(stack.storage_connection_string, drain_queues=drain_queues))
    return texts


# ================================================================== stacks


def start_stack(name: str, *, scenario: str = "demo", persistent_storage: bool = False,
                extra_env: dict[str, str] | None = None) -> DevStack:
    """A stack like conftest's `stack` fixture, for modules that need other options."""
    state = Path(os.environ["MEMSYNC_TEST_STATE_DIR"])
    devstack = DevStack(scenario=scenario, ports=StackPorts.free(), workdir=state / f"stack-{name}",
                        extra_env=extra_env or {}, persistent_storage=persistent_storage, tls_dir=state / "tls")
    return devstack.start()


def keep_logs(devstack: DevStack, extra: Iterable[Path] = ()) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    for log in (devstack.host_log, devstack.sim_log, *extra):
        if log.exists():
            (ARTIFACTS / f"{devstack.workdir.name}-{log.name}").write_bytes(log.read_bytes())


class SecondHost:
    """Another `python -m devstack.functions_host` on its own port, same Azurite and simulator."""

    def __init__(self, stack: DevStack, name: str = "host2") -> None:
        self.stack = stack
        self.port = free_port()
        self.log = stack.workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> SecondHost:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                # `=`: a random key may start with "-", which argparse would take for an option.
                [sys.executable, "-m", "devstack.functions_host", "--port", str(self.port),
                 f"--function-key={self.stack.function_key}"],
                cwd=REPO_ROOT, env=self.stack.process_env(), stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        self.stack._wait_http(f"http://127.0.0.1:{self.port}/admin/host/status", self.proc, "second host")
        return self

    def stop(self) -> None:
        import signal

        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def __enter__(self) -> SecondHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ================================================================== queues


def queue(stack: DevStack, name: str = SYNC_QUEUE, *, base64_messages: bool = True) -> Any:
    """A sync QueueClient on the stack's Azurite (base64 like the host, or raw text)."""
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

    kwargs: dict[str, Any] = {}
    if base64_messages:
        kwargs = {"message_encode_policy": TextBase64EncodePolicy(),
                  "message_decode_policy": TextBase64DecodePolicy()}
    client = QueueClient.from_connection_string(stack.storage_connection_string, name, **kwargs)
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()
    return client


def queue_contents(stack: DevStack, name: str) -> list[str]:
    """The raw text of the visible messages of a queue (at most 32), without taking them."""
    with queue(stack, name, base64_messages=False) as client:
        return [str(m.content) for m in client.peek_messages(max_messages=32)]


def queue_length(stack: DevStack, name: str) -> int:
    with queue(stack, name, base64_messages=False) as client:
        return int(client.get_queue_properties().approximate_message_count or 0)


def decoded(raw: str) -> str:
    try:
        return base64.b64decode(raw, validate=True).decode("utf-8", errors="replace")
    except ValueError:
        return raw


# ================================================================== figures


def figure(request: Any, name: str, value: int | float) -> None:
    """Attach a figure to this test's report (summed per name by `python -m tests.reliability`)."""
    request.node.user_properties.append((f"reliability.{name}", value))


def wait_until(predicate: Any, seconds: float = 60.0, interval: float = 0.25, what: str = "condition") -> Any:
    deadline = time.monotonic() + seconds
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")
        time.sleep(interval)


def host_log_lines(stack: DevStack, *extra: Path) -> Iterator[str]:
    for path in (stack.host_log, *extra):
        if path.exists():
            yield from path.read_text(errors="replace").splitlines()


# ================================================================== the leak scan, per module

SCAN_FIGURES: dict[str, int] = {"secretValues": 0, "textsScanned": 0, "bytesScanned": 0, "secretsFound": 0,
                                "modulesScanned": 0}


def current_secret_values(stack: DevStack) -> set[str]:
    """Every secret the simulator holds now (apps' secrets, including ones added during the module),
    the registrations' secrets and memsync's own host identity secret."""
    from tests.integration.conftest import scenario_secret_values

    with stack.sim() as sim:
        return scenario_secret_values(sim.get("/scenario").json())


class SecretScan:
    """What one module produced, scanned at its end for every secret value it used.

    Modules add their own texts (`texts`, e.g. HTTP responses) and secrets (`secrets`, e.g. values they
    made up); the stack's logs, workdir and Azurite contents are read at the end.
    """

    def __init__(self) -> None:
        self.recorder = Recorder()
        self.texts: list[str] = []
        self.secrets: set[str] = set()

    def finish(self, stack: DevStack, extra_stacks: Iterable[DevStack] = ()) -> list[str]:
        secrets = set(self.secrets)
        texts = self.recorder.seen + self.texts
        for each in (stack, *extra_stacks):
            if each.sim_env:
                with contextlib.suppress(httpx.HTTPError):
                    secrets |= current_secret_values(each)
            each.stop_host()  # nothing consumes the queues any more: drain them to read every message
            texts += stack_texts(each, drain_queues=True)
        secrets = {s for s in secrets if len(s) >= 8}
        SCAN_FIGURES["secretValues"] += len(secrets)
        SCAN_FIGURES["textsScanned"] += len(texts)
        SCAN_FIGURES["bytesScanned"] += sum(len(t) for t in texts)
        SCAN_FIGURES["modulesScanned"] += 1
        found = leaks(texts, secrets)
        SCAN_FIGURES["secretsFound"] += len(found)
        return found


def secret_scan_fixture() -> Any:
    """The module-scoped, autouse `secret_scan` fixture for a test directory's conftest.py: at the end of
    each module, its stack's logs, workdir, tables, queues and blobs and the responses it recorded are
    scanned for every secret value; a hit fails the module (an error in its last test's teardown)."""
    import pytest

    @pytest.fixture(scope="module", autouse=True)
    def secret_scan(request: Any, stack: DevStack) -> Iterator[SecretScan]:
        scan = SecretScan()
        yield scan
        extra = getattr(request.module, "EXTRA_STACKS", [])
        found = scan.finish(stack, extra)
        if found:
            pytest.fail(f"secret values leaked: {found}", pytrace=False)

    return secret_scan


class FaultInjector:
    """Adds fault rules to the simulator (`POST /_sim/faults`) and counts how many times they fired."""

    def __init__(self, stack: DevStack) -> None:
        self.stack = stack
        self.counted = 0

    def add(self, *rules: dict[str, Any]) -> list[int]:
        with self.stack.sim() as sim:
            response = sim.post("/faults", json={"rules": list(rules)})
            response.raise_for_status()
            return [r["id"] for r in response.json()["rules"]]

    def rules(self) -> list[dict[str, Any]]:
        with self.stack.sim() as sim:
            return list(sim.get("/faults").json()["rules"])

    def fired(self) -> int:
        return self.counted + sum(r["fired"] for r in self.rules())

    def clear(self) -> int:
        """Remove every rule; returns how many faults fired in all (this injector's lifetime)."""
        with contextlib.suppress(httpx.HTTPError):
            self.counted = self.fired()
            with self.stack.sim() as sim:
                sim.delete("/faults")
        return self.counted


# ================================================================== time travel


async def expire_leases(runtime: Any, integration_id: str, *, minutes: int = 11) -> int:
    """Fast-forward the tenants' sync leases (`syncing`, `lastSyncStartedAt`, `leaseUntil`) past their
    10 minutes, as if the time had passed; returns how many were expired."""
    from datetime import timedelta

    from shared.models import TenantStatus

    expired = 0
    for tenant in await runtime.tenants.list_tenants(integration_id):
        if tenant.status != TenantStatus.SYNCING or tenant.last_sync_started_at is None:
            continue
        found = await runtime.tenants.get_tenant_with_etag(integration_id, tenant.tenant_id)
        assert found is not None
        row, etag = found
        ago = timedelta(minutes=minutes)
        aged = row.model_copy(update={
            "last_sync_started_at": row.last_sync_started_at - ago,
            "lease_until": None if row.lease_until is None else row.lease_until - ago,
        })
        assert await runtime.tenants.replace_if_unchanged(aged, etag)
        expired += 1
    return expired
