"""The Microsoft clients against httpx.MockTransport: the requests they send, and how they page."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from shared.clients.defender import DefenderClient
from shared.clients.graph import GraphClient, error_message, graph_error, scopes_named
from shared.clients.partner_center import PartnerCenterClient
from shared.errors import ErrorCode
from shared.http import ApiClient, Budget, CallStats, FatalApiError, RetriableApiError
from shared.mapping.devices import MANAGED_DEVICE_SELECT

from .samples import sample_json, sample_text

pytestmark = pytest.mark.unit
GRAPH = "https://graph.test/v1.0"
TENANT = "0d6a0b41-58e3-4a7b-9b89-9b2c2b0b1a11"


class Recorder:
    def __init__(self, handler):
        self.requests: list[httpx.Request] = []
        self._handler = handler

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self._handler(request)


def api(handler, *, service="graph", sleeps=None, budget=60.0):
    recorder = Recorder(handler)
    waited = sleeps if sleeps is not None else []

    async def token(fresh: bool) -> str:
        return "token-fresh" if fresh else "token"

    async def sleep(seconds: float) -> None:
        waited.append(seconds)

    client = ApiClient(httpx.AsyncClient(transport=httpx.MockTransport(recorder)), service=service,
                       token=token, budget=Budget(budget), stats=CallStats(), sleep=sleep)
    return client, recorder


def device_pages(pages: int, per_page: int = 3):
    def handler(request: httpx.Request) -> httpx.Response:
        query = parse_qs(urlsplit(str(request.url)).query)
        n = int(query.get("$skiptoken", ["0"])[0])
        body = {"value": [{"id": f"dev-{n}-{i}"} for i in range(per_page)]}
        if n + 1 < pages:
            # Like Graph: the next link repeats the query options and adds $skiptoken.
            body["@odata.nextLink"] = (f"{GRAPH}/deviceManagement/managedDevices?$select="
                                       f"{','.join(MANAGED_DEVICE_SELECT)}&$top=1000&$skiptoken={n + 1}")
        return httpx.Response(200, json=body)

    return handler


async def test_managed_devices_follows_every_next_link_once_and_selects_the_contract_fields():
    client, recorder = api(device_pages(4))
    graph = GraphClient(GRAPH, directory=client)
    seen = [d["id"] async for page in graph.managed_devices() for d in page]
    assert len(seen) == 12 and len(set(seen)) == 12
    urls = [str(r.url) for r in recorder.requests]
    assert len(urls) == len(set(urls)) == 4
    first = parse_qs(urlsplit(urls[0]).query)
    assert first["$select"] == [",".join(MANAGED_DEVICE_SELECT)]
    assert "managedDeviceOwnerType" in first["$select"][0]
    assert first["$top"] == ["1000"]
    for i, url in enumerate(urls[1:], start=1):
        assert parse_qs(urlsplit(url).query)["$skiptoken"] == [str(i)]  # the link, whole
    assert all(r.headers["Authorization"] == "Bearer token" for r in recorder.requests)


async def test_paging_streams_page_by_page():
    client, recorder = api(device_pages(3))
    pages = GraphClient(GRAPH, directory=client).managed_devices()
    first = await pages.__anext__()
    assert len(first) == 3 and len(recorder.requests) == 1  # nothing read ahead
    await pages.aclose()


async def test_next_link_to_another_host_is_refused():
    def handler(request):
        return httpx.Response(200, json={"value": [], "@odata.nextLink": "https://evil.test/steal"})

    client, recorder = api(handler)
    with pytest.raises(FatalApiError):
        async for _ in GraphClient(GRAPH, directory=client).detected_apps():
            pass
    assert len(recorder.requests) == 1


async def test_a_repeated_next_link_stops_the_listing():
    link = f"{GRAPH}/deviceManagement/detectedApps?$skiptoken=same"

    def handler(request):
        return httpx.Response(200, json={"value": [{"id": "a"}], "@odata.nextLink": link})

    client, recorder = api(handler)
    with pytest.raises(RetriableApiError):
        async for _ in GraphClient(GRAPH, directory=client).detected_apps():
            pass
    assert len(recorder.requests) == 2


async def test_detected_apps_selects_the_software_fields_and_retry_after_is_honoured():
    calls = {"n": 0}

    def handler(request):
        calls["n"] += 1
        if calls["n"] == 1:
            return httpx.Response(429, headers={"Retry-After": "2.128"},
                                  json=sample_json("graph-throttling-429-response-body.json"))
        return httpx.Response(200, json=sample_json("graph-v1-detectedapp-list-response.json"))

    sleeps: list[float] = []
    client, recorder = api(handler, sleeps=sleeps)
    apps = [a async for page in GraphClient(GRAPH, directory=client).detected_apps() for a in page]
    assert [a["id"] for a in apps] == ["caf60db6-0db6-caf6-b60d-f6cab60df6ca"]
    assert sleeps == [2.128]
    assert client.stats.throttled == 1 and client.stats.requests == 2
    select = parse_qs(urlsplit(str(recorder.requests[0].url)).query)["$select"][0].split(",")
    assert set(select) == {"id", "displayName", "version", "publisher", "platform", "sizeInByte", "deviceCount"}


def test_intune_403_naming_scopes_is_permission_missing():
    observed = sample_text("OBSERVED-not-docs-intune-403-app-missing-permission-message.txt")
    inner = observed[observed.index("{"):]
    body = {"error": {"code": "Forbidden", "message": inner}}
    assert scopes_named(error_message(body)) == ["DeviceManagementManagedDevices.Read.All",
                                                 "DeviceManagementManagedDevices.ReadWrite.All"]
    error = graph_error(FatalApiError("graph", 403, "HTTP 403", body), area="devices", tenant_id=TENANT,
                        app_id="app")
    assert error.code == ErrorCode.PERMISSION_MISSING and not error.retriable
    assert "DeviceManagementManagedDevices.Read.All" in error.info.message


def test_token_roles_lacking_the_permission_name_it():
    body = {"error": {"code": "Forbidden", "message": "Forbidden"}}
    error = graph_error(FatalApiError("graph", 403, "HTTP 403", body), area="devices", tenant_id=TENANT,
                        app_id="app", roles=frozenset({"Directory.Read.All"}))
    assert error.code == ErrorCode.PERMISSION_MISSING
    assert "DeviceManagementManagedDevices.Read.All" in error.info.message


@pytest.mark.parametrize(
    ("status", "message"),
    [(403, "Forbidden"), (400, "Request not applicable to target tenant.")],
)
def test_intune_not_licensed(status, message):
    body = {"error": {"code": "BadRequest" if status == 400 else "Forbidden", "message": message}}
    error = graph_error(FatalApiError("graph", status, "x", body), area="devices", tenant_id=TENANT,
                        app_id="app", roles=frozenset({"DeviceManagementManagedDevices.Read.All"}))
    assert error.code == ErrorCode.INTUNE_NOT_LICENSED and not error.retriable


def test_exhausted_retries_are_throttled_or_unreachable_and_retriable():
    throttled = graph_error(RetriableApiError("graph", 429, "x", throttled=True), area="devices",
                            tenant_id=TENANT, app_id="app")
    down = graph_error(RetriableApiError("graph", 503, "x"), area="devices", tenant_id=TENANT, app_id="app")
    assert (throttled.code, down.code) == (ErrorCode.THROTTLED, ErrorCode.UNREACHABLE)
    assert throttled.retriable and down.retriable


async def test_partner_center_follows_links_next_with_the_continuation_header():
    def handler(request):
        if "seekOperation" not in str(request.url):
            body = sample_json("partnercenter-get-customers-response.json")
            body["links"]["next"] = {"uri": "/v1/customers?size=500&seekOperation=Next", "method": "GET",
                                     "headers": [{"key": "MS-ContinuationToken", "value": "token-2"}]}
            return httpx.Response(200, json=body)
        assert request.headers["MS-ContinuationToken"] == "token-2"
        return httpx.Response(200, json={"totalCount": 1, "items": [{"id": TENANT}], "links": {}})

    client, recorder = api(handler, service="partnerCenter")
    pc = PartnerCenterClient("https://pc.test", client)
    items = [i async for page in pc.customers() for i in page]
    assert len(items) == 3
    assert [str(r.url) for r in recorder.requests] == [
        "https://pc.test/v1/customers?size=500", "https://pc.test/v1/customers?size=500&seekOperation=Next"]
    assert "MS-ContinuationToken" not in recorder.requests[0].headers


async def test_defender_pages_by_skip_without_next_link_and_404_is_no_machines():
    def handler(request):
        skip = int(parse_qs(urlsplit(str(request.url)).query).get("$skip", ["0"])[0])
        count = 2 if skip < 4 else 1
        return httpx.Response(200, json={"value": [{"id": f"m{skip + i}"} for i in range(count)]})

    client, recorder = api(handler, service="defender")
    machines = [m["id"] async for page in DefenderClient("https://mde.test", client, page_size=2).machines()
                for m in page]
    assert machines == ["m0", "m1", "m2", "m3", "m4"]
    assert str(recorder.requests[0].url) == "https://mde.test/api/machines?%24top=2"
    assert len(recorder.requests) == 3

    client, _ = api(lambda r: httpx.Response(404, json=json.loads(
        sample_text("mde-error-resourcenotfound-example.json"))), service="defender")
    assert [p async for p in DefenderClient("https://mde.test", client).machines()] == []
