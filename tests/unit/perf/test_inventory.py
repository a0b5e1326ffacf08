"""The inventory: export jobs (completed, refused, failed, never completing), the per-app fallback, the
compact rows under Table Storage's limits, and change detection by row hash."""

from __future__ import annotations

import csv
import io
import json
import zipfile

import httpx
import pytest

from shared.clients.exports import ExportJobsClient, ExportUnavailable
from shared.clients.graph import GraphClient
from shared.http import ApiClient, Budget, CallStats
from shared.mapping.changes import PartitionDiff, StoredState, content_hash
from shared.mapping.inventory import (
    PROPERTIES_PER_ROW,
    PROPERTY_MAX_CHARS,
    InventoryCounts,
    InventoryIndex,
    ids_of,
    inventory_rows,
    rows_for,
)
from shared.services.inventory import InventorySync
from tests.unit.faketime import FakeTime

pytestmark = pytest.mark.unit
GRAPH = "https://graph.test/v1.0"
BLOB = "https://blob.test/export.zip?sig=abc"
PAIRS = [("dev-1", "app-a"), ("dev-1", "app-b"), ("dev-2", "app-a"), ("dev-3", "app-c")]


def export_zip(pairs, columns=("ApplicationKey", "ApplicationName", "DeviceId")) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow(columns)
    for device, app in pairs:
        row = {"ApplicationKey": app, "ApplicationName": f"name, of {app}", "DeviceId": device}
        writer.writerow([row[c] for c in columns])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("AppInvRawData_1.csv", ("\ufeff" + text.getvalue()).encode())
    return buffer.getvalue()


class FakeIntune:
    """Graph's export-job endpoints, the blob, and the per-app device listing, as a MockTransport."""

    def __init__(self, *, create_status=201, polls_needed=2, outcome="completed", blob=None):
        self.create_status = create_status
        self.polls_needed = polls_needed
        self.outcome = outcome
        self.blob = export_zip(PAIRS) if blob is None else blob
        self.polls = 0
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if request.url.host == "blob.test":
            assert "Authorization" not in request.headers  # a Graph token never goes to the blob
            return httpx.Response(200, content=self.blob)
        if path.endswith("/reports/exportJobs") and request.method == "POST":
            body = json.loads(request.content)
            assert body["reportName"] == "AppInvRawData" and "DeviceId" in body["select"]
            if self.create_status != 201:
                return httpx.Response(self.create_status, json={"error": {"code": "Forbidden", "message": "no"}})
            return httpx.Response(201, json={"id": "job-1", "status": "notStarted", "url": None})
        if "exportJobs('job-1')" in path:
            self.polls += 1
            status = "inProgress" if self.polls < self.polls_needed else self.outcome
            return httpx.Response(200, json={"id": "job-1", "status": status,
                                             "url": BLOB if status == "completed" else None})
        if path.endswith("/managedDevices") and "/detectedApps/" in path:
            app = path.split("/detectedApps/")[1].split("/")[0]
            return httpx.Response(200, json={"value": [{"id": d} for d, a in PAIRS if a == app]})
        return httpx.Response(404, json={"error": {"code": "ResourceNotFound", "message": path}})


def clients(fake: FakeIntune, *, max_wait=30.0, budget=600.0):
    http = httpx.AsyncClient(transport=httpx.MockTransport(fake))
    clock = FakeTime()
    budget_ = Budget(budget, clock=clock.clock)

    async def token(fresh: bool) -> str:
        return "token"

    api = ApiClient(http, service="intuneApps", token=token, budget=budget_, stats=CallStats(),
                    sleep=clock.sleep)
    exports = ExportJobsClient(GRAPH, api, http, budget=budget_, max_wait=max_wait,
                               sleep=clock.sleep, clock=clock.clock)
    return GraphClient(GRAPH, directory=api), exports, clock


async def _apps() -> list[str]:
    return ["app-a", "app-b", "app-c"]


def _pairs(index: InventoryIndex) -> set[tuple[str, str]]:
    return {(d, a) for d, apps in index.devices() for a in apps}


async def test_export_is_one_create_a_few_polls_and_one_download():
    fake = FakeIntune(polls_needed=3)
    graph, exports, clock = clients(fake)
    sync = InventorySync(graph, exports, store=None, integration_id="i", tenant_id="t")  # type: ignore[arg-type]
    index = await sync.read(_apps)
    assert sync.source == "export" and _pairs(index) == set(PAIRS)
    paths = [r.url.path for r in fake.requests]
    assert paths[0].endswith("/reports/exportJobs") and paths.count(paths[1]) == 3
    assert fake.requests[-1].url.host == "blob.test" and len(fake.requests) == 5
    assert clock.slept == [0.1, 0.25]  # the first poll goes out at once, later ones back off


@pytest.mark.parametrize("fake", [FakeIntune(create_status=403), FakeIntune(outcome="failed"),
                                  FakeIntune(blob=b"not a zip")], ids=["refused", "failed", "unreadable"])
async def test_unusable_export_falls_back_to_per_app_listing(fake):
    graph, exports, _ = clients(fake)
    sync = InventorySync(graph, exports, store=None, integration_id="i", tenant_id="t")  # type: ignore[arg-type]
    index = await sync.read(_apps)
    assert sync.source == "perApp" and sync.export_problem
    assert _pairs(index) == set(PAIRS)
    per_app = [r for r in fake.requests if "/detectedApps/" in r.url.path]
    assert len(per_app) == 3


async def test_export_that_never_completes_ends_after_the_bounded_wait():
    fake = FakeIntune(polls_needed=10**9)
    graph, exports, clock = clients(fake, max_wait=60.0)
    with pytest.raises(ExportUnavailable, match="did not complete"):
        await exports.wait(await exports.create("AppInvRawData", ["DeviceId"]))
    assert clock.now <= 60.0 and fake.polls < 30  # polls back off; the clock is fake, nothing waited
    sync = InventorySync(graph, exports, store=None, integration_id="i", tenant_id="t")  # type: ignore[arg-type]
    assert _pairs(await sync.read(_apps)) == set(PAIRS) and sync.source == "perApp"


async def test_the_wait_keeps_half_the_budget_for_the_fallback():
    fake = FakeIntune(polls_needed=10**9)
    _, exports, clock = clients(fake, max_wait=600.0, budget=20.0)
    with pytest.raises(ExportUnavailable):
        await exports.wait(await exports.create("AppInvRawData", ["DeviceId"]))
    assert clock.now <= 10.0


def test_index_skips_unusable_ids_and_repeats():
    index = InventoryIndex()
    assert index.add("d1", "a1") and index.add("d1", "a1")
    assert not index.add("", "a1") and not index.add("d/2", "a1") and not index.add("d3", None)
    assert index.skipped == 3
    assert list(index.devices()) == [("d1", ["a1"])] and list(index.apps()) == [("a1", ["d1"])]


def test_rows_stay_under_the_property_and_entity_limits_and_read_back_whole():
    ids = [f"{i:08d}-0000-0000-0000-{i:012d}" for i in range(30_000)]  # one app on 30,000 devices
    rows = rows_for("a", "app-1", ids)
    assert len(rows) > 1 and [r.part for r in rows] == list(range(len(rows)))
    assert all(r.parts == len(rows) for r in rows)
    read_back: list[str] = []
    for row in rows:
        entity = row.entity("p")
        columns = [v for k, v in entity.items() if k.startswith("ids")]
        assert len(columns) <= PROPERTIES_PER_ROW
        assert all(len(c) <= PROPERTY_MAX_CHARS for c in columns)  # 64 KiB of UTF-16
        assert sum(2 * len(c) for c in columns) < 1_000_000  # the 1 MiB entity limit, with room
        read_back.extend(ids_of(entity))
    assert read_back == ids
    assert rows_for("d", "dev-1", [])[0].count == 0


def test_inventory_row_hashes_change_only_with_content():
    def rows(pairs):
        index = InventoryIndex()
        for d, a in pairs:
            index.add(d, a)
        return {r.row_key: r.content_hash for r in inventory_rows(index, InventoryCounts())}

    before = rows(PAIRS)
    assert rows(list(reversed(PAIRS))) == before  # order of the export does not matter
    after = rows([*PAIRS, ("dev-3", "app-a")])
    changed = {k for k in after if before.get(k) != after[k]}
    assert changed == {"d|dev-3|000", "a|app-a|000"}


class FakeWriter:
    def __init__(self):
        self.upserts: list[dict] = []
        self.deletes: list[str] = []

    async def upsert(self, entity):
        self.upserts.append(entity)

    async def delete(self, partition, row_key):
        self.deletes.append(row_key)

    async def close(self):
        pass


class FakeStore:
    def __init__(self):
        self.last = FakeWriter()

    def writer(self):
        self.last = FakeWriter()
        return self.last


async def test_unchanged_rows_cost_no_write_and_vanished_rows_are_deleted():
    store = FakeStore()

    async def run(pairs, stored):
        index = InventoryIndex()
        for d, a in pairs:
            index.add(d, a)
        sync = InventorySync(None, None, store, "i", "t")  # type: ignore[arg-type]

        async def hashes():
            return stored

        counts = await sync.write(index, hashes())
        return counts, {e["RowKey"]: e["contentHash"] for e in store.last.upserts}

    counts, first = await run(PAIRS, {})
    assert counts.written == len(first) == 6 and counts.unchanged == 0
    counts, again = await run(PAIRS, first)
    assert again == {} and counts.written == 0 and counts.unchanged == 6 and store.last.deletes == []
    counts, _ = await run([p for p in PAIRS if p[0] != "dev-3"], first)
    assert store.last.deletes == ["d|dev-3|000", "a|app-c|000"] and counts.deleted == 2


def test_an_unchanged_asset_costs_no_write_and_a_changed_one_one():
    asset = {"id": "1", "tenantId": "t", "deviceName": "pc"}
    stored = {"1": StoredState(content_hash=content_hash(asset))}
    diff = PartitionDiff(stored, now="2025-01-01T00:00:00.000Z")
    assert diff.observe(dict(asset)) is None
    diff = PartitionDiff(stored, now="2025-01-01T00:00:00.000Z")
    op = diff.observe({**asset, "deviceName": "renamed"})
    assert op is not None and op.kind == "change"
