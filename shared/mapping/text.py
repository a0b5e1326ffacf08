"""Text from Microsoft made storable once, at the mapping boundary.

Customer tenants write what they like into device names, app titles and organization names, and Graph
passes it on. Two things in such text break a write to Table Storage, so every mapper passes its text
through `storable`:

- A lone UTF-16 surrogate (a JSON escape such as `\\ud800` with no partner) is no Unicode scalar value:
  it cannot be encoded as UTF-8, so the Table service request cannot even be built. It becomes U+FFFD.
- A string property holds at most 64 KiB, 32K UTF-16 code units, and an entity at most 1 MiB
  (https://learn.microsoft.com/rest/api/storageservices/understanding-the-table-service-data-model#property-types).
  Display text (names, titles) is bounded well below that and marked with "…" where it was cut, so the
  cut is visible in the value itself; any other text over the property limit makes the record
  unreadable (`SkippedRecord`), which the sync counts and reports, and the stored copy is kept.
"""

from __future__ import annotations

import re
from typing import Any

# Table Storage: a String property is at most 64 KiB, i.e. 32,768 UTF-16 code units.
PROPERTY_LIMIT = 32 * 1024
# Display fields (device names, titles, publishers, organization names) are cut here: long enough for any
# real name, short enough that one entity of several such fields stays far from the 1 MiB entity limit.
DISPLAY_LIMIT = 1024
ELLIPSIS = "…"

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class SkippedRecord(ValueError):
    """A listed record that cannot become an asset (missing id, wrong types, oversized values)."""


def utf16_length(text: str) -> int:
    """Length as Table Storage counts it: characters beyond the BMP take two UTF-16 code units."""
    return len(text) + sum(1 for c in text if ord(c) > 0xFFFF)


def _within(text: str, limit: int) -> bool:
    # Every text is mapped on the sync's hot path: at most half the limit in characters fits without counting.
    return len(text) * 2 <= limit or utf16_length(text) <= limit


def scrub(text: str) -> str:
    """`text` with every lone surrogate replaced by U+FFFD (Python keeps them from JSON escapes)."""
    return _LONE_SURROGATE.sub("\ufffd", text)


def bounded(text: str, limit: int = DISPLAY_LIMIT) -> str:
    """Display text cut to at most `limit` UTF-16 code units, ending in "…" when it was cut."""
    text = scrub(text)
    if _within(text, limit):
        return text
    cut = text[: limit - 1]
    while utf16_length(cut) > limit - 1:
        cut = cut[:-1]
    return cut + ELLIPSIS


def storable(raw: dict[str, Any], name: str, *, display: bool = False) -> str | None:
    """A string property of a Microsoft record, ready to store: None when absent, `SkippedRecord` when it
    is of another type or (not display text) longer than a Table Storage property may be."""
    value = raw.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise SkippedRecord(f"{name} is {type(value).__name__}, not a string")
    if display:
        return bounded(value)
    value = scrub(value)
    if not _within(value, PROPERTY_LIMIT):
        raise SkippedRecord(f"{name} is longer than Table Storage's {PROPERTY_LIMIT}-character property limit")
    return value
