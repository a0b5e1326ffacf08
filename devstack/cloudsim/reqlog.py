"""Bounded request log and counters (memory must not grow with repeated listings)."""

from __future__ import annotations

from collections import defaultdict, deque
from typing import Any

from .timeutil import iso_z, utcnow

LOG_CAPACITY = 100_000


class RequestLog:
    def __init__(self, capacity: int = LOG_CAPACITY) -> None:
        self.entries: deque[dict[str, Any]] = deque(maxlen=capacity)
        self.seq = 0
        self.by_status: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.by_tenant: dict[str, dict[str, dict[str, int]]] = defaultdict(
            lambda: defaultdict(lambda: defaultdict(int))
        )
        self.timing: dict[str, dict[str, float]] = {}

    def record(
        self,
        *,
        method: str,
        path: str,
        query: str,
        service: str,
        tenant_id: str | None,
        app_id: str | None,
        status: int,
        duration_ms: float,
        handler_ms: float,
        throttled: bool,
        route: str,
    ) -> None:
        self.seq += 1
        self.entries.append(
            {
                "seq": self.seq,
                "time": iso_z(utcnow()),
                "method": method,
                "path": path,
                "query": query,
                "service": service,
                "tenantId": tenant_id,
                "appId": app_id,
                "status": status,
                "durationMs": round(duration_ms, 3),
                "handlerMs": round(handler_ms, 3),
                "throttled": throttled,
                "route": route,
            }
        )
        self.by_status[service][str(status)] += 1
        self.by_tenant[tenant_id or "-"][service][str(status)] += 1
        if route:
            stats = self.timing.setdefault(route, {"count": 0, "totalMs": 0.0, "maxMs": 0.0})
            stats["count"] += 1
            stats["totalMs"] += handler_ms
            stats["maxMs"] = max(stats["maxMs"], handler_ms)

    def query(self, *, service: str | None, tenant_id: str | None, since: int) -> list[dict[str, Any]]:
        return [
            e
            for e in self.entries
            if e["seq"] > since
            and (not service or e["service"] == service)
            and (not tenant_id or e["tenantId"] == tenant_id)
        ]

    def clear(self) -> None:
        self.entries.clear()
        self.by_status.clear()
        self.by_tenant.clear()
        self.timing.clear()

    def counters(self) -> dict[str, Any]:
        return {
            "total": self.seq,
            "byService": {s: dict(v) for s, v in self.by_status.items()},
            "byTenant": {t: {s: dict(c) for s, c in v.items()} for t, v in self.by_tenant.items()},
            "handlerTiming": {
                route: {
                    "count": int(v["count"]),
                    "avgMs": round(v["totalMs"] / v["count"], 4) if v["count"] else 0.0,
                    "maxMs": round(v["maxMs"], 4),
                }
                for route, v in self.timing.items()
            },
        }
