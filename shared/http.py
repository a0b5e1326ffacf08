"""The HTTP boundary to Microsoft's APIs: one retry mechanism, a timeout on every call, a time budget.

Errors are split in two (tap-github's RetriableAPIError / FatalAPIError): `RetriableApiError` after the
retries and the budget are spent, `FatalApiError` at once for a 4xx that no retry can fix. A 429 is
waited out for as long as `Retry-After` says (fractional seconds too, but never less than
`MIN_RETRY_AFTER_SECONDS`) and repeated while 429 repeats, until the execution's `Budget` runs out of time
or of throttled retries (`MAX_THROTTLED_RETRIES`, shared by every client of one tenant's sync); without
the header, and on 5xx, timeouts and resets, the wait backs off exponentially with jitter.
https://learn.microsoft.com/graph/throttling#best-practices-to-handle-throttling
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from shared.ratelimit import Limiter

log = logging.getLogger(__name__)

RETRIABLE_STATUS = frozenset({500, 502, 503, 504})
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)

# The shortest wait a `Retry-After` (on a 429 or a 5xx) is taken to ask for. Graph's guidance is to wait
# what the header says and to "avoid immediate retries, because all requests accrue against your usage
# limits" (https://learn.microsoft.com/graph/throttling#best-practices-to-handle-throttling). A value of 0,
# a negative one or a few milliseconds asks for exactly such an immediate retry, and a server repeating it
# turned the retry loop into a storm of thousands of requests a minute. The header counts seconds (RFC 9110,
# section 10.2.3), so one second is the shortest wait that is not immediate; Graph's own fractional values
# (2.128 in its documented 429) are longer and are honoured unchanged. Microsoft's Python SDK is stricter
# still: it treats a Retry-After of 0 as absent and backs off from 3 seconds (kiota's RetryHandler).
MIN_RETRY_AFTER_SECONDS = 1.0

# Throttled retries one execution may make (a tenant's sync, a discovery, one consent), counted on the
# `Budget` that all its clients share: past them the execution gives way as throttled instead of waiting
# out its whole time budget. Microsoft's Graph SDKs retry one request at most 10 times
# (RetryHandlerOption.MAX_MAX_RETRIES, https://github.com/microsoft/kiota-python/blob/main/packages/http/
# httpx/kiota_http/middleware/options/retry_handler_option.py), and a tenant's sync has five concurrent
# readers (organization, devices, software, Defender, per-device software): 10 x 5 = 50. With the floor
# above, a service that never stops answering 429 gets at most 50 requests beyond the readers' first ones,
# spread over 10 seconds or more, where the time budget alone let a Retry-After of 0 repeat for 8 minutes.
MAX_THROTTLED_RETRIES = 50


class ApiError(Exception):
    def __init__(self, service: str, status: int | None, message: str, body: Any = None) -> None:
        super().__init__(f"{service}: {message}")
        self.service = service
        self.status = status
        self.body = body


class FatalApiError(ApiError):
    """A 4xx (other than 429) that a retry cannot fix."""


class ContinuationRefused(FatalApiError):
    """A page named a continuation link that `may_carry_token` refuses; nothing was sent there."""


class RetriableApiError(ApiError):
    """Still failing after retries: throttled (`throttled`) or unreachable, 5xx, timeouts."""

    def __init__(self, service: str, status: int | None, message: str, *, throttled: bool = False) -> None:
        super().__init__(service, status, message)
        self.throttled = throttled


@dataclass
class CallStats:
    """What a run's calls cost; goes into the run record."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    throttled_wait_seconds: float = 0.0
    by_service: dict[str, int] = field(default_factory=dict)

    def count(self, service: str) -> None:
        self.requests += 1
        self.by_service[service] = self.by_service.get(service, 0) + 1

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "retries": self.retries,
            "throttled": self.throttled,
            "throttledWaitSeconds": round(self.throttled_wait_seconds, 3),
            "byService": dict(self.by_service),
        }


@dataclass
class Budget:
    """What one execution (a tenant's sync, a discovery) may spend, shared by every call and client of it:
    a deadline, so a job ends inside the function timeout, and a number of throttled retries, so a service
    that keeps answering 429 is given way to instead of being asked again until the deadline."""

    seconds: float
    clock: Callable[[], float] = time.monotonic
    max_throttled_retries: int = MAX_THROTTLED_RETRIES
    started: float = field(init=False)
    throttled_retries: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def remaining(self) -> float:
        return self.seconds - (self.clock() - self.started)

    def take_throttled_retry(self) -> bool:
        """Count one throttled retry; False, and nothing counted, when none is left."""
        if self.throttled_retries >= self.max_throttled_retries:
            return False
        self.throttled_retries += 1
        return True


TokenSource = Callable[[bool], Awaitable[str]]
"""Returns a bearer token; called with True to force a fresh one after a 401."""


def parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` in seconds; Graph sends fractional values such as 2.128. HTTP dates are not used.
    The value as sent, down to 0 (a negative one is 0); `retry_wait` puts the floor under it."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)


def retry_wait(retry_after: float) -> float:
    """How long to wait when a server named `retry_after` seconds: that, but at least the floor."""
    return max(retry_after, MIN_RETRY_AFTER_SECONDS)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"https": 443, "http": 80}.get(scheme)
    except ValueError:  # a port that is not a number
        port = -1
    return scheme, (parts.hostname or "").lower(), port


def may_carry_token(service_url: str, link: str) -> bool:
    """Whether a continuation link a service sent (`@odata.nextLink`, Partner Center's `links.next.uri`)
    may be fetched with that service's bearer token: only over https, and only to the origin (scheme,
    host, port) of the service's own base URL. Every client that follows links asks this one function,
    so a page that names another host, or plain http, never receives a token.
    https://learn.microsoft.com/graph/paging (a nextLink is opaque, but it always names Graph itself)
    """
    if not isinstance(link, str) or any(c in link for c in "\r\n\t\\"):
        return False
    scheme, host, port = _origin(link)
    return scheme == "https" and bool(host) and (scheme, host, port) == _origin(service_url)


def continuation(api: ApiClient, service_url: str, link: str, followed: set[str]) -> str:
    """Check a continuation link before it is followed and note it as followed: one that leaves the
    service's origin is refused (`FatalApiError`, nothing sent), one already followed is a loop
    (`RetriableApiError`: the next run starts the listing again)."""
    if not may_carry_token(service_url, link):
        raise ContinuationRefused(api.service, 200, "a continuation link points outside the service's https origin")
    if link in followed:
        raise RetriableApiError(api.service, 200, "a continuation link repeats a page already read")
    followed.add(link)
    return link


class ApiClient:
    """Authenticated JSON calls to one Microsoft service, with retries, budget and rate limit."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        service: str,
        token: TokenSource,
        budget: Budget,
        stats: CallStats,
        limiter: Limiter | None = None,
        max_attempts: int = 6,
        base_backoff: float = 0.5,
        max_backoff: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._http = http
        self.service = service
        self._token = token
        self._budget = budget
        self.stats = stats
        self._limiter = limiter
        self._max_attempts = max_attempts
        self._base_backoff = base_backoff
        self._max_backoff = max_backoff
        self._sleep = sleep

    def _backoff(self, attempt: int) -> float:
        # Full jitter: https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/
        ceiling: float = min(self._max_backoff, self._base_backoff * (2**attempt))
        return random.uniform(ceiling / 2, ceiling)

    async def _wait(self, seconds: float, *, status: int | None, reason: str, throttled: bool) -> None:
        if seconds > self._budget.remaining():
            raise RetriableApiError(
                self.service, status, f"{reason}; the sync's time budget is spent", throttled=throttled
            )
        if throttled and not self._budget.take_throttled_retry():
            raise RetriableApiError(
                self.service, status,
                f"{reason}; the sync's {self._budget.max_throttled_retries} throttled retries are spent",
                throttled=True,
            )
        self.stats.retries += 1
        if throttled:
            self.stats.throttled += 1
            self.stats.throttled_wait_seconds += seconds
        await self._sleep(seconds)

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, str] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Send with retries; return a 2xx response or raise `FatalApiError` / `RetriableApiError`."""
        failures = 0
        refreshed = False
        while True:
            if self._limiter is not None:
                await self._limiter.acquire()
            token = await self._token(False)
            request_headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
            if headers:
                request_headers.update(headers)
            self.stats.count(self.service)
            try:
                response = await self._http.request(
                    method, url, params=params, json=json, headers=request_headers
                )
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                failures += 1
                reason = f"{type(exc).__name__} on {method} {httpx.URL(url).path}"
                if failures >= self._max_attempts:
                    raise RetriableApiError(self.service, None, reason) from exc
                await self._wait(self._backoff(failures), status=None, reason=reason, throttled=False)
                continue
            status = response.status_code
            if status < 400:
                return response
            if status == 429:
                # Keep waiting while 429 repeats (Graph throttling guidance), never less than the floor;
                # the budget ends it: its time, or the throttled retries the whole sync may make.
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                if retry_after is None:
                    failures += 1
                    delay = self._backoff(failures)
                else:
                    delay = retry_wait(retry_after)
                await self._wait(delay, status=429, reason="429 Too Many Requests", throttled=True)
                continue
            if status in RETRIABLE_STATUS:
                failures += 1
                reason = f"HTTP {status} on {method} {httpx.URL(url).path}"
                if failures >= self._max_attempts:
                    raise RetriableApiError(self.service, status, reason)
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                delay = self._backoff(failures) if retry_after is None else retry_wait(retry_after)
                await self._wait(delay, status=status, reason=reason, throttled=False)
                continue
            if status == 401 and not refreshed:
                # A token can be revoked or expire between cache and use; one fresh token, no more.
                refreshed = True
                await self._token(True)
                continue
            raise FatalApiError(self.service, status, f"HTTP {status} on {method} {httpx.URL(url).path}",
                                _json_or_text(response))

    async def get_json(self, url: str, params: dict[str, str] | None = None) -> Any:
        response = await self.request("GET", url, params=params)
        try:
            return response.json()
        except ValueError as exc:
            raise RetriableApiError(self.service, response.status_code, "response was not JSON") from exc


def _json_or_text(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:2000]


def new_http_client(*, timeout: httpx.Timeout = DEFAULT_TIMEOUT, max_connections: int = 32) -> httpx.AsyncClient:
    """One pooled client per process. TLS trust comes from SSL_CERT_FILE (httpx reads it)."""
    return httpx.AsyncClient(
        timeout=timeout,
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        http2=False,
        follow_redirects=False,
        trust_env=True,
    )
