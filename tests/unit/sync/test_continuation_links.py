"""A continuation link carries a bearer token only back to the service that sent it: one rule
(`shared.http.may_carry_token`) for Graph, Defender and Partner Center, each refusing before any request
leaves for the foreign or plain-http host."""

from __future__ import annotations

import httpx
import pytest

from shared.clients.defender import DefenderClient
from shared.clients.graph import GraphClient
from shared.clients.partner_center import PartnerCenterClient
from shared.http import ContinuationRefused, may_carry_token

from .test_clients import GRAPH, api

pytestmark = pytest.mark.unit

FOREIGN = [
    "https://attacker.example/v1.0/deviceManagement/managedDevices?$skiptoken=2",  # another host
    "http://{host}/next?$skiptoken=2",  # the same host over plain http
    "https://{host}:8443/next?$skiptoken=2",  # the same host on another port
    "https://{host}.attacker.example/next",  # a suffix trick
    "https://{host}@attacker.example/next",  # userinfo trick
    "//attacker.example/next",  # scheme-relative
    "https://{host}/next\r\nX-Injected: 1",  # header injection
]


@pytest.mark.parametrize("link", FOREIGN)
def test_may_carry_token_only_to_the_https_origin_of_the_service(link):
    assert not may_carry_token("https://graph.test/v1.0", link.format(host="graph.test"))


@pytest.mark.parametrize("link", ["https://graph.test/v1.0/x?$skiptoken=1", "https://GRAPH.test:443/v1.0/y"])
def test_may_carry_token_to_the_service_itself(link):
    assert may_carry_token("https://graph.test/v1.0", link)


def _first_page_then(link: str):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"value": [{"id": "a"}], "@odata.nextLink": link})
    return handler


@pytest.mark.parametrize("link", FOREIGN)
async def test_graph_refuses_a_foreign_next_link_before_sending_the_token(link):
    client, recorder = api(_first_page_then(link.format(host="graph.test")))
    pages = GraphClient(GRAPH, directory=client).managed_devices()
    assert await anext(pages) == [{"id": "a"}]
    with pytest.raises(ContinuationRefused):
        await anext(pages)
    assert [r.url.host for r in recorder.requests] == ["graph.test"]


@pytest.mark.parametrize("link", FOREIGN)
async def test_defender_refuses_a_foreign_next_link_before_sending_the_token(link):
    client, recorder = api(_first_page_then(link.format(host="mde.test")), service="defender")
    pages = DefenderClient("https://mde.test", client).machines()
    await anext(pages)
    with pytest.raises(ContinuationRefused):
        await anext(pages)
    assert len(recorder.requests) == 1


@pytest.mark.parametrize("link", [*FOREIGN, "http://pc.test/v1/customers?seekOperation=Next"])
async def test_partner_center_refuses_a_foreign_links_next_uri_before_sending_the_token(link):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"totalCount": 1, "items": [{"id": "c"}], "links": {"next": {
            "uri": link.format(host="pc.test"), "method": "GET",
            "headers": [{"key": "MS-ContinuationToken", "value": "t"}]}}})

    client, recorder = api(handler, service="partnerCenter")
    pages = PartnerCenterClient("https://pc.test", client).customers()
    await anext(pages)
    with pytest.raises(ContinuationRefused):
        await anext(pages)
    assert [str(r.url) for r in recorder.requests] == ["https://pc.test/v1/customers?size=500"]
