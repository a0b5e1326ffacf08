"""host.json parsing (only the settings this local host honours).

Reference: https://learn.microsoft.com/azure/azure-functions/functions-host-json
Queue settings: https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue#host-json
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

log = logging.getLogger("devstack.functions_host")

# Azure's front end rejects bodies over 100 MB with 413; the limit can be changed with
# the FUNCTIONS_REQUEST_BODY_SIZE_LIMIT app setting (bytes).
# https://learn.microsoft.com/azure/azure-functions/functions-scale#service-limits
DEFAULT_REQUEST_BODY_LIMIT = 100 * 1024 * 1024

# Consumption-plan default when host.json has no functionTimeout.
# https://learn.microsoft.com/azure/azure-functions/functions-host-json#functiontimeout
DEFAULT_FUNCTION_TIMEOUT = timedelta(minutes=5)

_TIMESPAN_RE = re.compile(
    r"^(?:(?P<days>\d+)\.)?(?P<h>\d{1,2}):(?P<m>\d{1,2})(?::(?P<s>\d{1,2})(?:\.(?P<frac>\d{1,7}))?)?$"
)


class HostConfigError(ValueError):
    """host.json holds a value the host cannot use."""


def parse_timespan(value: Any, *, number_unit: str = "seconds", what: str = "value") -> timedelta:
    """Parse a .NET TimeSpan as written in host.json ("hh:mm:ss[.fff]", "d.hh:mm:ss").

    Plain numbers are accepted too, in ``number_unit`` (host.json v1 used milliseconds for
    maxPollingInterval, so callers pick the unit per setting).
    """
    if isinstance(value, bool):
        raise HostConfigError(f"{what}: expected a TimeSpan, got {value!r}")
    if isinstance(value, (int, float)):
        return timedelta(**{number_unit: float(value)})
    if isinstance(value, str):
        m = _TIMESPAN_RE.match(value.strip())
        if m:
            frac = m.group("frac") or "0"
            return timedelta(
                days=int(m.group("days") or 0),
                hours=int(m.group("h")),
                minutes=int(m.group("m")),
                seconds=int(m.group("s") or 0),
                microseconds=int(frac.ljust(7, "0")) / 10,  # .NET ticks are 100 ns
            )
        if re.fullmatch(r"\d+(\.\d+)?", value.strip()):
            return timedelta(**{number_unit: float(value)})
    raise HostConfigError(f"{what}: cannot parse TimeSpan {value!r}")


@dataclass(frozen=True)
class QueuesOptions:
    """extensions.queues — defaults as documented for extension 5.x."""

    batch_size: int = 16
    new_batch_threshold: int = 8
    max_polling_interval: timedelta = timedelta(minutes=1)
    visibility_timeout: timedelta = timedelta(0)
    max_dequeue_count: int = 5
    message_encoding: str = "base64"  # "base64" | "none"

    # The host never polls faster than this when a queue is idle.
    MIN_POLLING_INTERVAL = timedelta(milliseconds=100)


@dataclass(frozen=True)
class HostConfig:
    route_prefix: str = "api"
    function_timeout: timedelta | None = DEFAULT_FUNCTION_TIMEOUT  # None = unlimited
    queues: QueuesOptions = field(default_factory=QueuesOptions)
    request_body_limit: int = DEFAULT_REQUEST_BODY_LIMIT
    raw: Mapping[str, Any] = field(default_factory=dict)


def _queues_options(section: Mapping[str, Any], cpu_count: int) -> QueuesOptions:
    lower = {k.lower(): v for k, v in section.items()}
    batch_size = int(lower.get("batchsize", 16))
    if not 1 <= batch_size <= 32:
        # The service returns at most 32 messages per Get Messages call.
        raise HostConfigError(f"extensions.queues.batchSize must be 1..32, got {batch_size}")
    # Documented default: batchSize/2 * number of vCPUs.
    default_threshold = max(0, batch_size // 2) * max(1, cpu_count)
    threshold = int(lower.get("newbatchthreshold", default_threshold))
    encoding = str(lower.get("messageencoding", "base64")).lower()
    if encoding not in ("base64", "none"):
        raise HostConfigError(f"extensions.queues.messageEncoding must be base64 or none, got {encoding!r}")
    max_poll = parse_timespan(
        lower.get("maxpollinginterval", "00:01:00"),
        number_unit="milliseconds",
        what="extensions.queues.maxPollingInterval",
    )
    max_poll = max(max_poll, QueuesOptions.MIN_POLLING_INTERVAL)
    return QueuesOptions(
        batch_size=batch_size,
        new_batch_threshold=threshold,
        max_polling_interval=max_poll,
        visibility_timeout=parse_timespan(
            lower.get("visibilitytimeout", "00:00:00"), what="extensions.queues.visibilityTimeout"
        ),
        max_dequeue_count=int(lower.get("maxdequeuecount", 5)),
        message_encoding=encoding,
    )


def parse_host_json(
    data: Mapping[str, Any], env: Mapping[str, str] | None = None, cpu_count: int | None = None
) -> HostConfig:
    env = os.environ if env is None else env
    extensions = data.get("extensions") or {}
    http = extensions.get("http") or {}
    route_prefix = str(http.get("routePrefix", "api")).strip("/")

    timeout: timedelta | None = DEFAULT_FUNCTION_TIMEOUT
    if "functionTimeout" in data:
        raw_timeout = data["functionTimeout"]
        # "-1" means unbounded (allowed on Premium/Dedicated plans).
        if raw_timeout is None or str(raw_timeout).strip() == "-1":
            timeout = None
        else:
            timeout = parse_timespan(raw_timeout, what="functionTimeout")

    limit = DEFAULT_REQUEST_BODY_LIMIT
    raw_limit = env.get("FUNCTIONS_REQUEST_BODY_SIZE_LIMIT")
    if raw_limit:
        try:
            limit = int(raw_limit)
        except ValueError as exc:
            raise HostConfigError(
                f"FUNCTIONS_REQUEST_BODY_SIZE_LIMIT must be a number of bytes, got {raw_limit!r}"
            ) from exc

    return HostConfig(
        route_prefix=route_prefix,
        function_timeout=timeout,
        queues=_queues_options(extensions.get("queues") or {}, cpu_count or os.cpu_count() or 1),
        request_body_limit=limit,
        raw=dict(data),
    )


def load_host_json(app_dir: Path, env: Mapping[str, str] | None = None) -> HostConfig:
    path = app_dir / "host.json"
    if not path.exists():
        log.warning("No host.json in %s; using defaults", app_dir)
        return parse_host_json({}, env)
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise HostConfigError(f"{path}: invalid JSON: {exc}") from exc
    version = data.get("version")
    if version != "2.0":
        # The v2+ runtime refuses to start without "version": "2.0".
        raise HostConfigError(f"{path}: 'version' must be \"2.0\", got {version!r}")
    return parse_host_json(data, env)
