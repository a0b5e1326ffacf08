"""Date-times from Microsoft, one form from the mapping boundary to Table Storage and back.

Graph and Defender write date-times in several forms (seven fraction digits, none, an offset, Intune's
`0001-01-01T00:00:00Z` for "never"). memsync stores them as Table Storage DateTime values (UTC, to the
microsecond, none before 1601-01-01:
https://learn.microsoft.com/rest/api/storageservices/understanding-the-table-service-data-model#property-types)
and shows them as ISO 8601 UTC with `Z`. The mappers pass each date through `normal_date`, so what is
hashed, stored and read back is one and the same text.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from shared.mapping.changes import stamp

# Table Storage's DateTime starts at 1601-01-01 (UTC); Intune writes 0001-01-01 for "never", read as null.
_EARLIEST = datetime(1601, 1, 1, tzinfo=UTC)
_FRACTION = re.compile(r"(\.\d{6})\d+")


def date_value(text: Any) -> Any:
    """A Microsoft or memsync date-time string as the DateTime to store: UTC, microseconds (Graph's seventh
    fraction digit dropped); None before Table Storage's earliest date. Text that is no date-time (or has
    no zone) is stored as the text it is, so nothing is lost."""
    if not isinstance(text, str):
        return text
    try:
        moment = datetime.fromisoformat(_FRACTION.sub(r"\1", text.strip()).replace("Z", "+00:00"))
    except ValueError:
        return text
    if moment.tzinfo is None:
        return text
    moment = moment.astimezone(UTC)
    return None if moment < _EARLIEST else moment


def date_text(value: Any, *, stamp_form: bool = False) -> Any:
    """A stored DateTime as the API shows it: ISO 8601 UTC with `Z`, the fraction only when there is one
    (`stamp_form`: memsync's own timestamps, always milliseconds, as `shared.mapping.changes.stamp`).
    Rows of the first layout hold the text itself, returned as it is."""
    if not isinstance(value, datetime):
        return value
    moment = value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if stamp_form:
        return stamp(moment)
    spec = "microseconds" if moment.microsecond else "seconds"
    return moment.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def normal_date(text: str | None) -> str | None:
    """A date-time as memsync stores and shows it (ISO 8601 UTC, `Z`, microseconds at most); None for
    one before 1601; text that is no zoned date-time as it is."""
    shown: str | None = date_text(date_value(text))
    return shown
