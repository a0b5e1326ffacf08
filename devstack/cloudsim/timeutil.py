"""Time formatting in the shapes the Microsoft services print."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso_z(value: datetime) -> str:
    """Graph/Defender style: ``2024-05-01T10:20:30.1234567Z`` style, we emit microseconds + Z."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def iso_seconds(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def entra_timestamp(value: datetime) -> str:
    """Entra error bodies print ``2016-01-09 02:02:12Z`` (see aad-*.json samples)."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def parse_datetime(text: str) -> datetime:
    """Parse an ISO-8601 / OData DateTimeOffset literal; raises ValueError."""
    cleaned = text.strip().strip("'")
    try:
        fast = datetime.fromisoformat(cleaned)  # 3.11 takes "Z" and up to 6 fraction digits
        return fast if fast.tzinfo else fast.replace(tzinfo=UTC)
    except ValueError:
        pass
    if cleaned.endswith(("Z", "z")):
        cleaned = cleaned[:-1] + "+00:00"
    # Python 3.11 fromisoformat accepts up to 6 fractional digits; Graph prints 7.
    if "." in cleaned:
        head, _, tail = cleaned.partition(".")
        digits = ""
        rest = ""
        for i, ch in enumerate(tail):
            if not ch.isdigit():
                rest = tail[i:]
                break
            digits += ch
        cleaned = f"{head}.{digits[:6].ljust(6, '0')}{rest}"
    parsed = datetime.fromisoformat(cleaned)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed
