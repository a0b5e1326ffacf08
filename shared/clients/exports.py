"""Intune report export jobs: create, poll until `completed`, download the zip, stream its CSV.

`POST /deviceManagement/reports/exportJobs` with `reportName`, `select` and `format`; poll
`GET /deviceManagement/reports/exportJobs('{id}')` until `status` is `completed` (or `failed`); the
`url` is a pre-signed blob link, fetched *without* the Graph bearer token (a token must not travel to a
host other than Graph's). https://learn.microsoft.com/intune/intune-service/fundamentals/reports-export-graph-apis

Polling is bounded: after `max_wait` seconds (or when the sync's budget runs short) the job counts as
never completed and `ExportUnavailable` is raised, so the caller falls back instead of hanging. The zip
is spooled to a temporary file and its CSV read row by row: a tenant's export is never held whole.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import tempfile
import time
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import IO, Any

import httpx

from shared.http import ApiClient, ApiError, Budget

log = logging.getLogger(__name__)

EXPORT_MAX_WAIT_SECONDS = 180.0
# The first poll goes out at once (small reports finish in a second); later ones back off to 5 s.
POLL_DELAYS = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0)
DOWNLOAD_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
DOWNLOAD_CHUNK = 1 << 16
ROWS_PER_YIELD = 2000  # give the event loop (table writes in flight) a turn this often while parsing


class ExportUnavailable(Exception):
    """The export could not be used: refused, failed, never completed in time, or not downloadable."""

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class ExportJobsClient:
    def __init__(
        self,
        base_url: str,
        api: ApiClient,
        http: httpx.AsyncClient,
        *,
        budget: Budget,
        max_wait: float = EXPORT_MAX_WAIT_SECONDS,
        poll_delays: Sequence[float] = POLL_DELAYS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._jobs_url = base_url.rstrip("/") + "/deviceManagement/reports/exportJobs"
        self._api = api
        self._http = http
        self._budget = budget
        self._max_wait = max_wait
        self._delays = tuple(poll_delays) or (1.0,)
        self._sleep = sleep
        self._clock = clock
        self.polls = 0
        self.downloaded_bytes = 0

    async def create(self, report_name: str, select: Sequence[str], fmt: str = "csv") -> dict[str, Any]:
        try:
            response = await self._api.request(
                "POST", self._jobs_url, json={"reportName": report_name, "select": list(select), "format": fmt}
            )
            job = response.json()
        except ApiError as exc:
            raise ExportUnavailable(f"the export job was refused ({exc})", status=exc.status) from exc
        except ValueError as exc:
            raise ExportUnavailable("the export job answer was not JSON") from exc
        if not isinstance(job, dict) or not isinstance(job.get("id"), str):
            raise ExportUnavailable("the export job answer has no id")
        return job

    async def wait(self, job: dict[str, Any]) -> str:
        """Poll until the job completes; its download URL. Raises `ExportUnavailable` when it fails or
        does not complete within `max_wait` (or the sync's budget)."""
        job_id = job["id"]
        url = f"{self._jobs_url}('{job_id}')"
        started = self._clock()
        # Half of what is left of the sync's budget stays for the fallback.
        limit = min(self._max_wait, self._budget.remaining() / 2)
        attempt = 0
        while True:
            status = str(job.get("status") or "")
            if status == "completed":
                link = job.get("url")
                if not isinstance(link, str) or not link.startswith("https://"):
                    raise ExportUnavailable("the completed export job has no https download url")
                return link
            if status == "failed":
                raise ExportUnavailable(f"the export job {job_id} failed")
            delay = self._delays[min(attempt, len(self._delays) - 1)]
            elapsed = self._clock() - started
            if elapsed + delay > limit:
                raise ExportUnavailable(f"the export job {job_id} did not complete in {elapsed:.0f} s "
                                        f"(status {status or 'unknown'})")
            if delay:
                await self._sleep(delay)
            attempt += 1
            self.polls += 1
            try:
                job = await self._api.get_json(url)
            except ApiError as exc:
                raise ExportUnavailable(f"polling the export job failed ({exc})", status=exc.status) from exc
            if not isinstance(job, dict):
                raise ExportUnavailable("the export job answer is not an object")

    async def download(self, url: str) -> IO[bytes]:
        """The zip, spooled to a temporary file (memory up to 8 MB, then disk); the caller closes it."""
        spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=8 << 20)  # noqa: SIM115  # returned open
        try:
            # A pre-signed blob link: no Authorization header, no redirects to elsewhere.
            async with self._http.stream("GET", url, timeout=DOWNLOAD_TIMEOUT,
                                         headers={"Accept": "application/zip, */*"}) as response:
                self._api.stats.count(self._api.service)
                if response.status_code != 200:
                    raise ExportUnavailable(f"the export download answered HTTP {response.status_code}",
                                            status=response.status_code)
                async for chunk in response.aiter_bytes(DOWNLOAD_CHUNK):
                    spool.write(chunk)
                    self.downloaded_bytes += len(chunk)
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            spool.close()
            raise ExportUnavailable(f"the export download failed ({type(exc).__name__})") from exc
        except BaseException:
            spool.close()
            raise
        spool.seek(0)
        return spool

    async def rows(self, report_name: str, select: Sequence[str]) -> AsyncIterator[dict[str, str]]:
        """Create, wait for and download one export; yield its CSV rows as dicts, streamed."""
        try:
            # One bound for creating and polling, whatever a single slow request would do.
            async with asyncio.timeout(self._max_wait + 1.0):
                link = await self.wait(await self.create(report_name, select))
        except TimeoutError:
            raise ExportUnavailable(f"the export job did not complete in {self._max_wait:.0f} s") from None
        archive = await self.download(link)
        try:
            async for row in csv_rows(archive):
                yield row
        finally:
            archive.close()


async def csv_rows(archive: IO[bytes]) -> AsyncIterator[dict[str, str]]:
    """The rows of the one CSV in an export zip, read as a stream; `ExportUnavailable` when unreadable."""
    try:
        with zipfile.ZipFile(archive) as zipped:
            names = [n for n in zipped.namelist() if n.lower().endswith(".csv")]
            if not names:
                raise ExportUnavailable("the export zip holds no CSV")
            with zipped.open(names[0]) as raw:
                text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
                reader = csv.DictReader(text)
                for n, row in enumerate(reader, start=1):
                    yield row
                    if n % ROWS_PER_YIELD == 0:
                        await asyncio.sleep(0)
    except (zipfile.BadZipFile, csv.Error, UnicodeDecodeError) as exc:
        raise ExportUnavailable(f"the export could not be read ({type(exc).__name__})") from exc
