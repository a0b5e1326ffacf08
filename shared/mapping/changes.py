"""Change detection and removal rules for one partition's assets (pure; the store does the I/O).

- An asset whose content hash matches the stored one, and that is not marked removed, is not rewritten.
- An asset that comes back after being removed is rewritten with `removedAt` cleared.
- An id listed twice in one listing is stored once (the first copy) and its repeat counted as skipped.
- A record listed with a usable id but fields memsync cannot read (a wrong type, an oversized value) is
  *present but unreadable*: it is counted as skipped with its reason, its stored copy is kept as it is,
  and it is never marked removed (it is in the listing; only its content could not be read).
- Only a *complete* listing marks the assets it did not contain as removed; after a partial or failed
  listing nothing is marked removed (a page that never arrived says nothing about its devices).
- `firstSeenAt` is kept from the first write. `lastSeenAt` is stored when an asset is written or removed;
  for an asset still present it is read as the later of that and the partition's last complete listing
  (see `shared.stores.assets`), so an unchanged asset needs no write to stay current.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

# Bookkeeping columns: not part of the content, so not part of the hash.
BOOKKEEPING = frozenset({"firstSeenAt", "lastSeenAt", "removedAt"})


def content_hash(asset: dict[str, Any]) -> str:
    """A stable digest of an asset's content (key order and bookkeeping dates do not matter)."""
    content = {k: v for k, v in asset.items() if k not in BOOKKEEPING}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def stamp(moment: datetime) -> str:
    """memsync's own timestamps: UTC, milliseconds, `Z` (one format, so they sort as text)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def later(a: str | None, b: str | None) -> str | None:
    """The later of two memsync stamps (None counts as earliest)."""
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


@dataclass(frozen=True)
class StoredState:
    """What the store holds of an asset, loaded once per run to compare against."""

    content_hash: str | None
    first_seen_at: str | None = None
    last_seen_at: str | None = None
    removed_at: str | None = None
    # The stored object fields (`Entity.nested`: a device's Defender, Autopilot, Entra and vulnerability
    # summaries), kept when their source could not be read this time.
    nested: dict[str, Any] = field(default_factory=dict)


MAX_REASONS = 20  # distinct skip reasons kept per listing (each one counted)

OpKind = Literal["add", "change", "remove"]


@dataclass(frozen=True)
class WriteOp:
    kind: OpKind
    row_key: str
    content_hash: str | None
    asset: dict[str, Any] | None  # the whole asset for add/change; None for remove
    first_seen_at: str | None
    last_seen_at: str | None
    removed_at: str | None


@dataclass
class ChangeCounts:
    added: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: int = 0

    def __iadd__(self, other: ChangeCounts) -> ChangeCounts:
        self.added += other.added
        self.changed += other.changed
        self.unchanged += other.unchanged
        self.removed += other.removed
        self.skipped += other.skipped
        return self

    def to_json(self) -> dict[str, int]:
        return {"added": self.added, "changed": self.changed, "unchanged": self.unchanged,
                "removed": self.removed, "skipped": self.skipped}


@dataclass
class PartitionDiff:
    """Compares a stream of freshly mapped assets with the partition's stored state."""

    existing: dict[str, StoredState]
    now: str
    previous_listing_at: str | None = None
    counts: ChangeCounts = field(default_factory=ChangeCounts)
    seen: set[str] = field(default_factory=set)
    unreadable: set[str] = field(default_factory=set)
    reasons: dict[str, int] = field(default_factory=dict)

    def observe(self, asset: dict[str, Any]) -> WriteOp | None:
        """The write this asset needs, or None when it is unchanged (or a repeat within the listing)."""
        row_key = asset["id"]
        if row_key in self.seen:
            # Listed twice (paging while the tenant changes): the first copy wins, the repeat is skipped.
            self.counts.skipped += 1
            return None
        self.seen.add(row_key)
        digest = content_hash(asset)
        stored = self.existing.get(row_key)
        if stored is None:
            self.counts.added += 1
            return WriteOp("add", row_key, digest, asset, self.now, self.now, None)
        if stored.content_hash == digest and stored.removed_at is None:
            self.counts.unchanged += 1
            return None
        self.counts.changed += 1
        return WriteOp("change", row_key, digest, asset, stored.first_seen_at or self.now, self.now, None)

    def skip(self, row_key: str | None = None, reason: str = "unreadable") -> None:
        """A listed record that could not be mapped. With its id it is present but unreadable: kept as
        stored, never removed by this listing; without one it cannot be placed and is only counted."""
        self.counts.skipped += 1
        if len(self.reasons) < MAX_REASONS or reason in self.reasons:
            self.reasons[reason] = self.reasons.get(reason, 0) + 1
        if row_key is not None and row_key not in self.seen:
            self.unreadable.add(row_key)

    def finish(self, *, complete: bool) -> list[WriteOp]:
        """Removals: only after a complete listing, only of assets not yet marked removed."""
        if not complete:
            return []
        removals = []
        for row_key, stored in self.existing.items():
            if row_key in self.seen or row_key in self.unreadable or stored.removed_at is not None:
                continue
            self.counts.removed += 1
            removals.append(
                WriteOp("remove", row_key, stored.content_hash, None, stored.first_seen_at,
                        later(stored.last_seen_at, self.previous_listing_at), self.now)
            )
        return removals

    def present(self) -> int:
        """Assets present after this listing: seen now, and unreadable ones whose stored copy was kept."""
        kept = sum(1 for k in self.unreadable - self.seen
                   if k in self.existing and self.existing[k].removed_at is None)
        return len(self.seen) + kept

    def skipped_reasons(self) -> str:
        """The reasons records were skipped, most frequent first: '2 x isEncrypted is str, ...'."""
        ranked = sorted(self.reasons.items(), key=lambda kv: (-kv[1], kv[0]))
        return "; ".join(f"{n} x {reason}" for reason, n in ranked[:5])
