"""Injected faults and the built-in rate limiters that emulate the services' published limits."""

from __future__ import annotations

import random
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

FAULT_KINDS = ("latency", "status", "throttle", "reset", "slow")
SERVICES = ("entra", "graph", "defender", "partnercenter", "vault", "*")


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
    matched: int = 0
    fired: int = 0
    id: int = 0

    @classmethod
    def from_json(cls, raw: dict[str, Any], rule_id: int) -> FaultRule:
        if not isinstance(raw, dict):
            raise ValueError("each rule is a JSON object")
        kind = raw.get("kind", "status")
        if kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {FAULT_KINDS}")
        service = raw.get("service", "*") or "*"
        if service not in SERVICES:
            raise ValueError(f"service must be one of {SERVICES}")
        retry_after = raw.get("retryAfter")
        count = raw.get("count")
        return cls(
            service=service,
            tenantId=(raw.get("tenantId") or None),
            pathContains=raw.get("pathContains") or None,
            kind=kind,
            latencyMs=float(raw.get("latencyMs", 120_000 if kind == "slow" else 50)),
            jitterMs=float(raw.get("jitterMs", 0)),
            status=int(raw.get("status", 429 if kind == "throttle" else 503)),
            retryAfter=None if retry_after is None else str(retry_after),
            rate=float(raw.get("rate", 1.0)),
            count=None if count is None else int(count),
            afterRequests=int(raw.get("afterRequests", 0)),
            id=rule_id,
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class FaultEngine:
    def __init__(self, seed: int) -> None:
        self.rules: list[FaultRule] = []
        self._next_id = 1
        self._rng = random.Random(f"faults:{seed}")

    def add(self, raws: list[dict[str, Any]]) -> list[FaultRule]:
        added = []
        for raw in raws:
            rule = FaultRule.from_json(raw, self._next_id)
            self._next_id += 1
            self.rules.append(rule)
            added.append(rule)
        return added

    def clear(self) -> None:
        self.rules.clear()

    def match(self, service: str, tenant_id: str | None, path: str) -> FaultRule | None:
        """The first rule that fires for this request (counting matches as it goes)."""
        for rule in self.rules:
            if rule.service not in ("*", service):
                continue
            if rule.tenantId and rule.tenantId != tenant_id:
                continue
            if rule.pathContains and rule.pathContains not in path:
                continue
            rule.matched += 1
            if rule.matched <= rule.afterRequests:
                continue
            if rule.count is not None and rule.fired >= rule.count:
                continue
            if rule.rate < 1.0 and self._rng.random() >= rule.rate:
                continue
            rule.fired += 1
            return rule
        return None

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


class RateLimiter:
    """Sliding-window counters keyed by (limit, app, tenant)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._windows: dict[tuple[str, str, str], deque[float]] = {}

    def reset(self) -> None:
        self._windows.clear()

    def check(self, limit: Limit, app_id: str, tenant_id: str) -> float | None:
        """None when allowed; otherwise seconds until a slot frees up (the Retry-After)."""
        if not self.enabled:
            return None
        now = time.monotonic()
        window = self._windows.setdefault((limit.name, app_id, tenant_id), deque())
        horizon = now - limit.window_s
        while window and window[0] <= horizon:
            window.popleft()
        if len(window) >= limit.requests:
            return max(0.001, window[0] + limit.window_s - now)
        window.append(now)
        return None
