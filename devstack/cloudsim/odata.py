"""The small part of OData the simulated APIs need: ``$filter`` clauses joined by ``and``,
``$select`` lists, skip tokens and next links."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from .model import EntityStore
from .timeutil import parse_datetime

_TOKEN = re.compile(r"\s*('(?:[^']|'')*'|\(|\)|[^\s()]+)")
COMPARISONS = ("eq", "ne", "lt", "gt", "le", "ge")


class ODataError(ValueError):
    """A query option the service would reject with 400."""


@dataclass(frozen=True)
class Clause:
    field: str
    op: str
    value: Any  # float epoch for datetime fields, str otherwise
    is_datetime: bool


def parse_filter(text: str, *, datetime_fields: set[str], string_fields: set[str]) -> list[Clause]:
    tokens = [t for t in _TOKEN.findall(text) if t not in ("(", ")")]
    if not tokens or len(tokens) % 4 != 3:
        raise ODataError("Invalid filter clause")
    clauses: list[Clause] = []
    for index in range(0, len(tokens), 4):
        field, op, raw = tokens[index : index + 3]
        if index + 3 < len(tokens) and tokens[index + 3].lower() != "and":
            raise ODataError("Invalid filter clause")
        op = op.lower()
        if op not in COMPARISONS:
            raise ODataError(f"Invalid filter clause: unknown operator '{op}'")
        if field in datetime_fields:
            try:
                value: Any = parse_datetime(raw).timestamp()
            except ValueError as exc:
                raise ODataError(f"Invalid filter clause: '{raw}' is not a valid DateTimeOffset") from exc
            clauses.append(Clause(field, op, value, True))
        elif field in string_fields:
            if op not in ("eq", "ne") or not (raw.startswith("'") and raw.endswith("'") and len(raw) >= 2):
                raise ODataError("Invalid filter clause")
            clauses.append(Clause(field, op, raw[1:-1].replace("''", "'"), False))
        else:
            raise ODataError(f"Invalid filter clause: Could not find a property named '{field}'")
    return clauses


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "lt": lambda a, b: a < b,
    "gt": lambda a, b: a > b,
    "le": lambda a, b: a <= b,
    "ge": lambda a, b: a >= b,
}


def predicate_for(
    store: EntityStore, clauses: list[Clause], *, case_insensitive: bool = True
) -> Callable[[str], bool] | None:
    if not clauses:
        return None
    epochs = store.epochs

    def matches(entity_id: str) -> bool:
        for clause in clauses:
            compare = _OPS[clause.op]
            if clause.is_datetime:
                value = epochs.get(entity_id, {}).get(clause.field)
                if value is None or not compare(value, clause.value):
                    return False
            else:
                obj = store.get(entity_id) or {}
                current = obj.get(clause.field)
                left = str(current).lower() if case_insensitive and current is not None else current
                right = str(clause.value).lower() if case_insensitive else clause.value
                if not compare(left, right):
                    return False
        return True

    return matches


def parse_select(text: str | None, known: set[str], type_name: str) -> tuple[str, ...] | None:
    if not text:
        return None
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    for name in names:
        if name not in known:
            raise ODataError(f"Could not find a property named '{name}' on type '{type_name}'.")
    return names


def encode_skiptoken(seq: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode().rstrip("=")


def decode_skiptoken(token: str) -> int:
    try:
        padded = token + "=" * (-len(token) % 4)
        text = base64.urlsafe_b64decode(padded.encode()).decode()
        kind, _, value = text.partition(":")
        if kind != "seq":
            raise ValueError(text)
        return int(value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ODataError("The skip token is not valid.") from exc


def build_query(params: list[tuple[str, str]]) -> str:
    return "&".join(f"{key}={quote(value, safe=chr(36) + chr(39) + '(),:-.')}" for key, value in params)


def parse_top(raw: str | None, *, default: int, maximum: int) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ODataError(f"Invalid value '{raw}' for $top query option found.") from exc
    if value < 0:
        raise ODataError(f"Invalid value '{raw}' for $top query option found.")
    return max(1, min(value, maximum))
