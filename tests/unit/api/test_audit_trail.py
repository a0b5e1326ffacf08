"""The audit trail: what a record holds of a request (names, never values; the platform's address), and the
store's paging by integration and time (shared/stores/audit.py on in-memory Table Storage)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import azure.functions as func
import pytest

from functions.audit import client_address, field_names
from shared.stores.audit import AuditEntry, AuditStore
from tests.unit.memtables import MemoryTables

pytestmark = pytest.mark.unit

SECRET = "sync~Secret.value-0123456789abcdefghijklm"


def request(body: object, params: dict[str, str] | None = None, headers: dict[str, str] | None = None):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return func.HttpRequest(method="PATCH", url="http://localhost/api/integrations/x?code=KEY", body=raw,
                            params=params or {}, headers=headers or {}, route_params={})


def test_a_record_names_the_fields_sent_never_their_values():
    names = field_names(request({"syncAppSecret": SECRET, "displayName": "x", "tenantFilter": {"include": []}},
                                params={"code": "KEY", "purgeAssets": "true"}))
    assert names == ["displayName", "purgeAssets", "syncAppSecret", "tenantFilter"]
    assert SECRET not in json.dumps(names) and "KEY" not in names
    # A name that is no plain identifier could carry data: left out.
    assert field_names(request({SECRET: 1, "a b": 2, "ok": 3})) == ["ok"]
    assert field_names(request(b"[" * 100_000)) == [] and field_names(request(b"not json")) == []


@pytest.mark.parametrize(("header", "address"), [
    (None, None),
    ("203.0.113.9", "203.0.113.9"),
    ("203.0.113.9:50432", "203.0.113.9"),
    ("10.0.0.1, 198.51.100.7:443", "198.51.100.7"),  # the last entry is the platform's
    ("evil, [2001:db8::1]:443", "2001:db8::1"),
    ("<script>", None),
])
def test_the_address_is_the_one_the_platform_appended(header, address):
    assert client_address({"X-Forwarded-For": header} if header else {}) == address


async def test_the_trail_pages_newest_first_by_integration_and_time():
    store = AuditStore(MemoryTables())
    start = datetime(2026, 11, 1, tzinfo=UTC)
    for n in range(6):
        await store.append(AuditEntry(at=start + timedelta(hours=n), action="integration.change", outcome="done",
                                      status=200, actor_kind="functionKey", actor_name="function key",
                                      integration_id="a" if n % 2 else "b", fields=["displayName"]))
    page, last = await store.page(top=4)
    assert [e["at"] for e in page] == [f"2026-11-01T0{h}:00:00.000Z" for h in (5, 4, 3, 2)] and last is not None
    rest, last = await store.page(top=4, after=last)
    assert [e["at"][11:13] for e in rest] == ["01", "00"] and last is None
    mine, _ = await store.page(top=10, integration_id="a")
    assert [e["at"][11:13] for e in mine] == ["05", "03", "01"]
    window, _ = await store.page(top=10, since=start + timedelta(hours=2), until=start + timedelta(hours=4))
    assert [e["at"][11:13] for e in window] == ["03", "02"]  # since inclusive, until exclusive


async def test_records_are_only_ever_inserted():
    store = AuditStore(MemoryTables())
    entry = AuditEntry(at=datetime(2026, 11, 1, tzinfo=UTC), action="integration.delete", outcome="done",
                       status=204, actor_kind="functionKey", actor_name="function key")
    await store.append(entry)
    with pytest.raises(Exception):  # noqa: B017  # the SDK's ResourceExistsError: never overwritten
        await store.append(entry)
