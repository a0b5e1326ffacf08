"""Present but unreadable records, and text made storable at the mapping boundary (pure)."""

from __future__ import annotations

import pytest

from shared.mapping.changes import PartitionDiff, StoredState
from shared.mapping.devices import map_device, record_id
from shared.mapping.software import map_software
from shared.mapping.text import DISPLAY_LIMIT, PROPERTY_LIMIT, SkippedRecord, bounded, storable, utf16_length

pytestmark = pytest.mark.unit
NOW = "2026-11-29T00:00:00.000Z"


@pytest.mark.parametrize(("field", "value", "reason"), [
    ("isEncrypted", "true", "isEncrypted is str, not a boolean"),
    ("totalStorageSpaceInBytes", "256GB", "totalStorageSpaceInBytes is str, not a whole number"),
    ("deviceName", 12345, "deviceName is int, not a string"),
    ("imei", "9" * (PROPERTY_LIMIT + 1), "imei is longer than Table Storage's 32768-character property limit"),
])
def test_a_device_with_one_unreadable_field_is_skipped_with_its_reason_and_keeps_its_id(field, value, reason):
    raw = {"id": "dev-1", field: value}
    with pytest.raises(SkippedRecord, match=reason):
        map_device(raw, tenant_id="t")
    assert record_id(raw) == "dev-1"


def test_a_title_with_a_numeric_version_is_skipped():
    with pytest.raises(SkippedRecord, match="version is int"):
        map_software({"id": "app-1", "version": 10}, tenant_id="t")


def test_unreadable_known_records_are_present_and_never_removed():
    existing = {k: StoredState(f"h-{k}", NOW) for k in ("a", "b", "c")}
    diff = PartitionDiff(existing, NOW)
    diff.observe({"id": "a", "x": 1})
    diff.skip("b", "isEncrypted is str, not a boolean")
    diff.skip(None, "id is missing or not a usable identifier")
    removals = diff.finish(complete=True)
    assert [op.row_key for op in removals] == ["c"]
    assert diff.present() == 2
    assert diff.counts.skipped == 2
    assert diff.skipped_reasons() == ("1 x id is missing or not a usable identifier; "
                                      "1 x isEncrypted is str, not a boolean")


def test_an_unreadable_new_record_is_not_counted_present():
    diff = PartitionDiff({}, NOW)
    diff.skip("new", "deviceName is int, not a string")
    assert diff.finish(complete=True) == [] and diff.present() == 0


def test_lone_surrogates_become_replacement_characters():
    assert storable({"n": "a\ud800b\udfffc"}, "n") == "a\ufffdb\ufffdc"
    assert map_device({"id": "d", "deviceName": "PC-\udc00"}, tenant_id="t")["deviceName"] == "PC-\ufffd"
    # A valid pair is one character and stays.
    assert storable({"n": "😀"}, "n") == "😀"


def test_display_text_is_bounded_visibly_in_utf16_units():
    long = "N" * 100_000
    cut = bounded(long)
    assert cut == "N" * (DISPLAY_LIMIT - 1) + "…"
    emoji = bounded("😀" * DISPLAY_LIMIT)
    assert utf16_length(emoji) <= DISPLAY_LIMIT and emoji.endswith("…")
    assert map_software({"id": "a", "displayName": long}, tenant_id="t")["displayName"] == cut
    assert bounded("short") == "short"
