"""Per-device installed software (which devices have a title, what is on a device), kept compactly.

The source is Intune's `AppInvRawData` export (one CSV row per device and app) or, when that is not
available, the per-app device listings. Either way the pairs go into an `InventoryIndex` that holds ids
once and the pairs as small integer arrays (a 50,000-device tenant has over half a million pairs; as
Python strings in sets they would cost hundreds of megabytes).

Stored as rows of ids (see `shared.stores.device_software`): one row per device holding its app ids
and one row per app holding its device ids, each split into string columns under Table Storage's
64 KiB property limit and into further rows under its 1 MiB entity limit:
https://learn.microsoft.com/rest/api/storageservices/understanding-the-table-service-data-model#property-types
A row's content hash makes an unchanged row cost no write, as for the assets (`shared.mapping.changes`).
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from shared.mapping.devices import safe_id
from shared.mapping.text import SkippedRecord

# AppInvRawData columns memsync needs (FACTS.md lists all of them).
APP_INV_REPORT = "AppInvRawData"
APP_INV_SELECT: tuple[str, ...] = ("ApplicationKey", "DeviceId")

# A string property holds at most 64 KiB of UTF-16, i.e. 32,768 characters; keep a margin.
PROPERTY_MAX_CHARS = 30_000
# An entity holds at most 1 MiB and 252 properties: 14 full id columns (~840 KB) stay well under.
PROPERTIES_PER_ROW = 14
ID_SEPARATOR = ","

Side = Literal["d", "a"]  # a device's row (its app ids) or an app's row (its device ids)


def row_prefix(side: Side, item_id: str) -> str:
    """Every row of one device or app starts with this; parts follow as 3-digit numbers."""
    return f"{side}|{item_id}|"


def row_key(side: Side, item_id: str, part: int) -> str:
    return f"{row_prefix(side, item_id)}{part:03d}"


def prefix_end(prefix: str) -> str:
    """The smallest key after every key that starts with `prefix` (its last character + 1)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


class InventoryIndex:
    """Device <-> app pairs with every id held once and the pairs as `array('I')` of indices."""

    def __init__(self) -> None:
        self._device_index: dict[str, int] = {}
        self._app_index: dict[str, int] = {}
        self.device_ids: list[str] = []
        self.app_ids: list[str] = []
        self._apps_of: list[array[int]] = []
        self.skipped = 0

    def __len__(self) -> int:
        return sum(len(a) for a in self._apps_of)

    def _device(self, device_id: str) -> int:
        found = self._device_index.get(device_id)
        if found is None:
            found = self._device_index[device_id] = len(self.device_ids)
            self.device_ids.append(device_id)
            self._apps_of.append(array("I"))
        return found

    def _app(self, app_id: str) -> int:
        found = self._app_index.get(app_id)
        if found is None:
            found = self._app_index[app_id] = len(self.app_ids)
            self.app_ids.append(app_id)
        return found

    def add(self, device_id: object, app_id: object) -> bool:
        """One pair; an unusable id (empty, or not storable as a row key) is counted and skipped."""
        try:
            device, app = safe_id(device_id), safe_id(app_id)
        except SkippedRecord:
            self.skipped += 1
            return False
        self._apps_of[self._device(device)].append(self._app(app))
        return True

    def add_app(self, app_id: str) -> None:
        """An app known to have no devices still gets its (empty) entry."""
        self._app(app_id)

    def devices(self) -> Iterator[tuple[str, list[str]]]:
        """(device id, its sorted distinct app ids)."""
        for index, device_id in enumerate(self.device_ids):
            apps = sorted({self.app_ids[a] for a in self._apps_of[index]})
            if apps:
                yield device_id, apps

    def apps(self) -> Iterator[tuple[str, list[str]]]:
        """(app id, its sorted distinct device ids), inverted from the per-device arrays."""
        holders: list[array[int]] = [array("I") for _ in self.app_ids]
        for device, apps in enumerate(self._apps_of):
            for app in set(apps):
                holders[app].append(device)
        for index, app_id in enumerate(self.app_ids):
            devices = sorted(self.device_ids[d] for d in holders[index])
            if devices:
                yield app_id, devices
        del holders


@dataclass(frozen=True)
class InventoryRow:
    """One stored row: part `part` of a device's app ids or an app's device ids."""

    row_key: str
    side: Side
    item_id: str
    part: int
    parts: int
    columns: tuple[str, ...]  # id lists joined by ID_SEPARATOR, each <= PROPERTY_MAX_CHARS
    count: int
    content_hash: str

    def entity(self, partition: str) -> dict[str, object]:
        entity: dict[str, object] = {
            "PartitionKey": partition, "RowKey": self.row_key, "side": self.side, "itemId": self.item_id,
            "part": self.part, "parts": self.parts, "count": self.count, "contentHash": self.content_hash,
        }
        for i, text in enumerate(self.columns):
            entity[f"ids{i}"] = text
        return entity


def _columns(ids: Iterable[str]) -> Iterator[list[str]]:
    """Comma-joined columns of at most PROPERTY_MAX_CHARS characters each (ids are never split)."""
    column: list[str] = []
    size = 0
    for item in ids:
        extra = len(item) + (1 if column else 0)
        if column and size + extra > PROPERTY_MAX_CHARS:
            yield column
            column, size = [], 0
            extra = len(item)
        column.append(item)
        size += extra
    if column:
        yield column


def rows_for(side: Side, item_id: str, ids: list[str]) -> list[InventoryRow]:
    """The rows that hold `ids` for one device or app: PROPERTIES_PER_ROW columns per row."""
    columns = [ID_SEPARATOR.join(c) for c in _columns(ids)]
    groups = [columns[i:i + PROPERTIES_PER_ROW] for i in range(0, len(columns), PROPERTIES_PER_ROW)] or [[]]
    rows = []
    for part, group in enumerate(groups):
        count = sum(text.count(ID_SEPARATOR) + 1 for text in group if text)
        digest = hashlib.sha256(f"{len(groups)}\n".encode() + "\n".join(group).encode()).hexdigest()[:32]
        rows.append(InventoryRow(row_key(side, item_id, part), side, item_id, part, len(groups),
                                 tuple(group), count, digest))
    return rows


def ids_of(entity: dict[str, object]) -> list[str]:
    """The ids a stored row holds, in order."""
    out: list[str] = []
    index = 0
    while True:
        text = entity.get(f"ids{index}")
        if not isinstance(text, str):
            return out
        if text:
            out.extend(text.split(ID_SEPARATOR))
        index += 1


@dataclass
class InventoryCounts:
    devices: int = 0
    apps: int = 0
    pairs: int = 0
    written: int = 0
    unchanged: int = 0
    deleted: int = 0

    def to_json(self) -> dict[str, int]:
        return {"devices": self.devices, "apps": self.apps, "pairs": self.pairs, "written": self.written,
                "unchanged": self.unchanged, "deleted": self.deleted}


def inventory_rows(index: InventoryIndex, counts: InventoryCounts) -> Iterator[InventoryRow]:
    """Every row of a complete inventory, devices first."""
    counts.pairs = len(index)
    for device_id, apps in index.devices():
        counts.devices += 1
        yield from rows_for("d", device_id, apps)
    for app_id, devices in index.apps():
        counts.apps += 1
        yield from rows_for("a", app_id, devices)
