"""Change detection (content hash) and the removal rules (complete vs partial listing)."""

from __future__ import annotations

import pytest

from shared.mapping.changes import PartitionDiff, StoredState, content_hash

pytestmark = pytest.mark.unit
T1, T2, T3 = "2025-01-01T00:00:00.000Z", "2025-01-02T00:00:00.000Z", "2025-01-03T00:00:00.000Z"


def asset(id_: str, **fields):
    return {"id": id_, "tenantId": "t", "deviceName": f"pc-{id_}", **fields}


def stored(a, **kw):
    return StoredState(content_hash=content_hash(a), first_seen_at=T1, last_seen_at=T1, **kw)


def test_hash_ignores_key_order_and_bookkeeping_but_not_content():
    a = {"id": "1", "deviceName": "x", "defender": {"riskScore": "Low", "machineId": "m"}}
    b = {"defender": {"machineId": "m", "riskScore": "Low"}, "deviceName": "x", "id": "1",
         "firstSeenAt": T1, "lastSeenAt": T2, "removedAt": None}
    assert content_hash(a) == content_hash(b)
    assert content_hash(a) != content_hash({**a, "deviceName": "y"})
    assert content_hash(a) != content_hash({**a, "defender": None})


def test_new_changed_and_unchanged_assets():
    same, changed = asset("1"), asset("2")
    diff = PartitionDiff({"1": stored(same), "2": stored(changed)}, now=T3, previous_listing_at=T2)
    assert diff.observe(same) is None
    op = diff.observe({**changed, "deviceName": "renamed"})
    assert op is not None and op.kind == "change"
    assert op.first_seen_at == T1 and op.last_seen_at == T3 and op.removed_at is None
    op = diff.observe(asset("3"))
    assert op is not None and op.kind == "add" and op.first_seen_at == T3
    assert diff.finish(complete=True) == []
    assert diff.counts.to_json() == {"added": 1, "changed": 1, "unchanged": 1, "removed": 0, "skipped": 0}


def test_complete_listing_marks_missing_assets_removed_once():
    gone, kept = asset("gone"), asset("kept")
    already = asset("already")
    existing = {"gone": stored(gone), "kept": stored(kept), "already": stored(already, removed_at=T1)}
    diff = PartitionDiff(existing, now=T3, previous_listing_at=T2)
    diff.observe(kept)
    removals = diff.finish(complete=True)
    assert [(r.kind, r.row_key) for r in removals] == [("remove", "gone")]
    assert removals[0].removed_at == T3
    assert removals[0].last_seen_at == T2  # it was in the previous complete listing
    assert diff.counts.removed == 1


def test_partial_listing_removes_nothing():
    existing = {"a": stored(asset("a")), "b": stored(asset("b"))}
    diff = PartitionDiff(existing, now=T3)
    diff.observe(asset("a"))
    assert diff.finish(complete=False) == []
    assert diff.counts.removed == 0


def test_device_that_comes_back_clears_removed_at():
    back = asset("back")
    diff = PartitionDiff({"back": stored(back, removed_at=T2)}, now=T3)
    op = diff.observe(back)  # same content, but it was marked removed
    assert op is not None and op.kind == "change" and op.removed_at is None and op.first_seen_at == T1


def test_repeated_listing_entry_is_written_once_and_counted_as_skipped():
    diff = PartitionDiff({"2": stored(asset("2"))}, now=T3)
    assert diff.observe(asset("1")) is not None
    assert diff.observe({**asset("1"), "deviceName": "second copy"}) is None  # the first copy wins
    assert diff.observe(asset("2")) is None
    assert diff.observe(asset("2")) is None
    diff.skip()  # a record the mapping refused
    assert diff.finish(complete=True) == []
    assert diff.counts.to_json() == {"added": 1, "changed": 0, "unchanged": 1, "removed": 0, "skipped": 3}
    assert diff.present() == 2


def test_second_identical_run_writes_nothing():
    listing = [asset(str(i)) for i in range(5)]
    first = PartitionDiff({}, now=T1)
    ops = [first.observe(a) for a in listing]
    existing = {op.row_key: StoredState(op.content_hash, op.first_seen_at, op.last_seen_at) for op in ops if op}
    second = PartitionDiff(existing, now=T2, previous_listing_at=T1)
    assert [second.observe(a) for a in listing] == [None] * 5
    assert second.finish(complete=True) == []
