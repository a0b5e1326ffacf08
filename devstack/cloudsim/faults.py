"""Injected faults and the built-in rate limiters that emulate the services' published limits.

Two phases: the *request* kinds (latency, status, throttle, reset, slow) act before the service
handler runs; the *response* kinds (nextLink, corrupt, truncate) rewrite the 2xx JSON body the
handler produced, so hostile upstream data needs no hand-written proxy.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

REQUEST_KINDS = ("latency", "status", "throttle", "reset", "slow")
TRANSFORM_KINDS = ("nextLink", "corrupt", "truncate")
FAULT_KINDS = REQUEST_KINDS + TRANSFORM_KINDS
SERVICES = ("entra", "graph", "defender", "partnercenter", "vault", "*")
# A repeated corrupt value may not exceed this many characters (the simulator must survive it).
MAX_REPEATED_CHARS = 64 * 1024 * 1024
# Fields that only make sense for one response kind.
_KIND_ONLY = {
    "link": "nextLink",
    "field": "corrupt",
    "value": "corrupt",
    "records": "corrupt",
    "repeat": "corrupt",
    "bytes": "truncate",
}
_PLACEHOLDER = re.compile(r"\{(origin|host|base|link)\}")


def _opt_int(raw: dict[str, Any], name: str, *, minimum: int) -> int | None:
    value = raw.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return value


def _number(raw: dict[str, Any], name: str, default: float) -> float:
    value = raw.get(name, default)
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a number, got {value!r}") from exc


def _whole(raw: dict[str, Any], name: str, default: int | None) -> int | None:
    value = raw.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a whole number >= 0, got {value!r}")
    try:
        number = int(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a whole number >= 0, got {value!r}") from exc
    if number < 0 or (isinstance(value, float) and number != value):
        raise ValueError(f"{name} must be a whole number >= 0, got {value!r}")
    return number


def _opt_str(raw: dict[str, Any], name: str) -> str | None:
    value = raw.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {value!r}")
    return value


@dataclass
class FaultRule:
    service: str = "*"
    tenantId: str | None = None
    pathContains: str | None = None
    kind: str = "status"
    latencyMs: float = 50.0
    jitterMs: float = 0.0
    status: int = 503
    retryAfter: str | None = None
    rate: float = 1.0
    count: int | None = None
    afterRequests: int = 0
    # Response kinds: nextLink -> link; corrupt -> field, value, records, repeat; truncate -> bytes.
    link: str | None = None
    field: str | None = None
    value: Any = None
    records: int | None = None
    repeat: int | None = None
    bytes: int | None = None
    matched: int = 0
    fired: int = 0
    id: int = 0

    @property
    def transforms(self) -> bool:
        return self.kind in TRANSFORM_KINDS

    @classmethod
    def from_json(cls, raw: dict[str, Any], rule_id: int) -> FaultRule:
        if not isinstance(raw, dict):
            raise ValueError("each rule is a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(
                f"unknown rule field(s) {unknown}; known fields are {sorted(known - {'matched', 'fired', 'id'})}"
            )
        kind = raw.get("kind", "status")
        if kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {FAULT_KINDS}, got {kind!r}")
        service = raw.get("service", "*") or "*"
        if service not in SERVICES:
            raise ValueError(f"service must be one of {SERVICES}, got {service!r}")
        for name, owner in _KIND_ONLY.items():
            if raw.get(name) is not None and kind != owner:
                raise ValueError(f"{name} is only valid for kind {owner!r}, not {kind!r}")
        retry_after = raw.get("retryAfter")
        if retry_after is not None and (
            isinstance(retry_after, bool) or not isinstance(retry_after, str | int | float)
        ):
            raise ValueError(f"retryAfter must be a string or a number, got {retry_after!r}")
        rate = _number(raw, "rate", 1.0)
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be between 0 and 1, got {rate!r}")
        status = _whole(raw, "status", 429 if kind == "throttle" else 503)
        assert status is not None
        if not 100 <= status <= 599:
            raise ValueError(f"status must be an HTTP status code (100-599), got {status!r}")
        rule = cls(
            service=service,
            tenantId=_opt_str(raw, "tenantId"),
            pathContains=_opt_str(raw, "pathContains"),
            kind=kind,
            latencyMs=_number(raw, "latencyMs", 120_000 if kind == "slow" else 50),
            jitterMs=_number(raw, "jitterMs", 0),
            status=status,
            retryAfter=None if retry_after is None else str(retry_after),
            rate=rate,
            count=_whole(raw, "count", None),
            afterRequests=_whole(raw, "afterRequests", 0) or 0,
            id=rule_id,
        )
        if kind == "nextLink":
            link = raw.get("link")
            if not isinstance(link, str):
                raise ValueError(
                    'kind nextLink needs a string "link" (placeholders {origin}, {host}, {base}, {link}), '
                    f"got {link!r}"
                )
            rule.link = link
        elif kind == "corrupt":
            name = raw.get("field")
            if not isinstance(name, str) or not name:
                raise ValueError(f'kind corrupt needs a non-empty string "field" (a property name), got {name!r}')
            rule.field = name
            rule.value = raw.get("value")
            rule.records = _opt_int(raw, "records", minimum=1)
            rule.repeat = _opt_int(raw, "repeat", minimum=1)
            if rule.repeat is not None:
                if not isinstance(rule.value, str) or not rule.value:
                    raise ValueError(f'repeat needs a non-empty string "value" to repeat, got {rule.value!r}')
                if len(rule.value) * rule.repeat > MAX_REPEATED_CHARS:
                    raise ValueError(f"value repeated {rule.repeat} times exceeds {MAX_REPEATED_CHARS} characters")
        elif kind == "truncate":
            rule.bytes = _opt_int(raw, "bytes", minimum=1)
        return rule

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def corrupt_value(self) -> Any:
        if self.repeat is not None:
            return str(self.value) * self.repeat
        return self.value


def _next_link(doc: Any, service: str, rule: FaultRule, places: dict[str, str]) -> None:
    if not isinstance(doc, dict) or rule.link is None:
        return
    if service == "partnercenter":
        # Partner Center pages carry the continuation as links.next (uri + MS-ContinuationToken header).
        links = doc.get("links")
        if not isinstance(links, dict):
            links = doc["links"] = {}
        nxt = links.get("next")
        original = nxt.get("uri") if isinstance(nxt, dict) else None
        new = _PLACEHOLDER.sub(lambda m: str(original or "") if m.group(1) == "link" else places[m.group(1)], rule.link)
        if isinstance(nxt, dict):
            nxt["uri"] = new
        else:
            links["next"] = {"uri": new, "method": "GET", "headers": []}
        return
    key = "nextLink" if service == "vault" else "@odata.nextLink"
    original = doc.get(key)
    new = _PLACEHOLDER.sub(lambda m: str(original or "") if m.group(1) == "link" else places[m.group(1)], rule.link)
    if key in doc or "value" not in doc:
        doc[key] = new
        return
    # Absent: put it where Microsoft does, before "value".
    rebuilt: dict[str, Any] = {}
    for name, item in doc.items():
        if name == "value":
            rebuilt[key] = new
        rebuilt[name] = item
    doc.clear()
    doc.update(rebuilt)


def _records(doc: Any) -> list[Any]:
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict):
        for key in ("value", "items"):
            if isinstance(doc.get(key), list):
                return doc[key]  # type: ignore[no-any-return]
        return [doc]
    return []


def _corrupt(doc: Any, rule: FaultRule) -> None:
    records = [r for r in _records(doc) if isinstance(r, dict)]
    if rule.records is not None:
        records = records[: rule.records]
    value = rule.corrupt_value()
    for record in records:
        record[rule.field] = value


def transform_body(rules: list[FaultRule], *, service: str, body: bytes, places: dict[str, str]) -> bytes:
    """Apply the firing response rules, in order, to a 2xx JSON body; truncation cuts the final bytes.

    ``places`` maps the nextLink placeholders origin, host and base to this request's values."""
    out = body
    structural = [r for r in rules if r.kind in ("nextLink", "corrupt")]
    if structural:
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            doc = None  # not JSON after all: nothing to rewrite
        if doc is not None:
            for rule in structural:
                if rule.kind == "nextLink":
                    _next_link(doc, service, rule, places)
                else:
                    _corrupt(doc, rule)
            # ensure_ascii: lone surrogates travel as \udXXX escapes, as a JSON service would send them.
            out = json.dumps(doc, separators=(",", ":")).encode("ascii")
    for rule in rules:
        if rule.kind == "truncate":
            out = out[: rule.bytes if rule.bytes is not None else len(out) // 2]
    return out


class FaultEngine:
    def __init__(self, seed: int) -> None:
        self.rules: list[FaultRule] = []
        self._next_id = 1
        self._rng = random.Random(f"faults:{seed}")

    def add(self, raws: list[dict[str, Any]]) -> list[FaultRule]:
        """Validate every rule first, so a bad rule adds none of them (ValueError names the rule)."""
        added = []
        for index, raw in enumerate(raws):
            try:
                added.append(FaultRule.from_json(raw, self._next_id + index))
            except ValueError as exc:
                raise ValueError(f"rules[{index}]: {exc}") from exc
        self._next_id += len(added)
        self.rules.extend(added)
        return added

    def clear(self) -> None:
        self.rules.clear()

    def match(self, service: str, tenant_id: str | None, path: str) -> FaultRule | None:
        """The first request-phase rule that fires for this request (counting matches as it goes).

        Response kinds (nextLink, corrupt, truncate) are skipped here; see ``match_transforms``."""
        for rule in self.rules:
            if not rule.transforms and self._fires(rule, service, tenant_id, path):
                return rule
        return None

    def match_transforms(self, service: str, tenant_id: str | None, path: str) -> list[FaultRule]:
        """Every response-phase rule that fires for this (2xx JSON) response, in the order added."""
        return [r for r in self.rules if r.transforms and self._fires(r, service, tenant_id, path)]

    def _fires(self, rule: FaultRule, service: str, tenant_id: str | None, path: str) -> bool:
        if rule.service not in ("*", service):
            return False
        if rule.tenantId and rule.tenantId != tenant_id:
            return False
        if rule.pathContains and rule.pathContains not in path:
            return False
        rule.matched += 1
        if rule.matched <= rule.afterRequests:
            return False
        if rule.count is not None and rule.fired >= rule.count:
            return False
        if rule.rate < 1.0 and self._rng.random() >= rule.rate:
            return False
        rule.fired += 1
        return True

    def delay_s(self, rule: FaultRule) -> float:
        jitter = self._rng.uniform(-rule.jitterMs, rule.jitterMs) if rule.jitterMs else 0.0
        return max(0.0, (rule.latencyMs + jitter) / 1000.0)


@dataclass(frozen=True)
class Limit:
    name: str
    requests: int
    window_s: float


# Intune: 2000 requests / 20 s per app per tenant on device endpoints, 1000 on app endpoints
# (https://learn.microsoft.com/graph/throttling-limits#intune-service-limits);
# Defender: 100 calls / minute (https://learn.microsoft.com/defender-endpoint/api/get-machines#limitations).
INTUNE_DEVICES = Limit("intuneDevices", 2000, 20.0)
INTUNE_APPS = Limit("intuneApps", 1000, 20.0)
DEFENDER_MACHINES = Limit("defender", 100, 60.0)
# Defender's vulnerability APIs: "Rate limitations for this API are 50 calls per minute and 1500 calls per
# hour" (https://learn.microsoft.com/defender-endpoint/api/get-discovered-vulnerabilities), both at once,
# counted apart from /api/machines.
DEFENDER_VULNERABILITIES = (
    Limit("defenderVulnerabilitiesPerMinute", 50, 60.0),
    Limit("defenderVulnerabilitiesPerHour", 1500, 3600.0),
)


class RateLimiter:
    """Sliding-window counters keyed by (limit, app, tenant). ``clock`` (monotonic seconds) is replaceable,
    so a test can move time instead of waiting for it."""

    def __init__(self, enabled: bool, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.enabled = enabled
        self.clock = clock
        self._windows: dict[tuple[str, str, str], deque[float]] = {}

    def reset(self) -> None:
        self._windows.clear()

    def check(self, limit: Limit, app_id: str, tenant_id: str) -> float | None:
        """None when allowed; otherwise seconds until a slot frees up (the Retry-After)."""
        refused = self.check_all((limit,), app_id, tenant_id)
        return None if refused is None else refused[0]

    def check_all(self, limits: tuple[Limit, ...], app_id: str, tenant_id: str) -> tuple[float, Limit] | None:
        """A request that must fit every one of ``limits`` (a per-minute and a per-hour window): None when it
        does, and it then counts in each; otherwise (seconds until every window has room, the window that
        waits longest), and it counts in none, as a refused call does not use up Microsoft's quota."""
        if not self.enabled:
            return None
        now = self.clock()
        windows = []
        refused: tuple[float, Limit] | None = None
        for limit in limits:
            window = self._windows.setdefault((limit.name, app_id, tenant_id), deque())
            horizon = now - limit.window_s
            while window and window[0] <= horizon:
                window.popleft()
            if len(window) >= limit.requests:
                wait = max(0.001, window[0] + limit.window_s - now)
                if refused is None or wait > refused[0]:
                    refused = (wait, limit)
            windows.append(window)
        if refused is not None:
            return refused
        for window in windows:
            window.append(now)
        return None
