"""Response-transforming faults (nextLink, corrupt, truncate), driven through the simulator's own
dispatcher in-process: aiohttp's mocked requests, no socket, no subprocess."""

from __future__ import annotations

import asyncio
import copy
import json
import ssl
from dataclasses import dataclass
from typing import Any
from unittest import mock

import pytest
from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.test_utils import make_mocked_request

from devstack.cloudsim.faults import FaultEngine, FaultRule
from devstack.cloudsim.scenario import build_simulation, load_spec
from devstack.cloudsim.server import build_app, dispatch

pytestmark = pytest.mark.unit

HOST = "127.0.0.1:8443"
ORIGIN = f"https://{HOST}"
GRAPH = "https://graph.microsoft.com"
DEFENDER = "https://api.securitycenter.microsoft.com"
PC = "https://api.partnercenter.microsoft.com"
DEVICES = "/graph/v1.0/deviceManagement/managedDevices"
MACHINES = "/defender/api/machines"
CUSTOMERS = "/partnercenter/v1/customers"
_TLS = ssl.create_default_context()  # any SSL context makes the mocked request https


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Sim:
    """The demo scenario (or a variant) behind the real dispatcher, with tokens minted directly."""

    def __init__(self, spec: dict[str, Any] | None = None) -> None:
        self.app = build_app(copy.deepcopy(spec) if spec is not None else load_spec("demo"))
        self.server = self.app["cloudsim"]
        sim = self.server.sim
        self.contoso = sim.tenant_keys["contoso"]
        self.northwind = sim.tenant_keys["northwind"]
        self.partner = sim.partner_tenant_id
        self.sync_app = sim.app_keys["sync-app"]
        self.partner_app = sim.app_keys["partner-app"]

    def token(self, audience: str, *, tenant: str | None = None) -> str:
        roles = {
            GRAPH: ["DeviceManagementManagedDevices.Read.All"],
            DEFENDER: ["Machine.Read.All"],
            PC: [],
        }[audience]
        app_id = self.partner_app if audience == PC else self.sync_app
        tenant_id = tenant or (self.partner if audience == PC else self.contoso)
        return str(
            self.server.tokens.issue(
                tenant_id=tenant_id, app_id=app_id, audience=audience, roles=roles, lifetime_s=3600
            )
        )

    async def call(
        self, method: str, path: str, *, audience: str | None = None, tenant: str | None = None, body: Any = None
    ) -> Answer:
        headers = {"Host": HOST}
        if audience:
            headers["Authorization"] = f"Bearer {self.token(audience, tenant=tenant)}"
        extra: dict[str, Any] = {}
        if body is not None:
            payload = StreamReader(mock.Mock(), 2**16, loop=asyncio.get_running_loop())
            payload.feed_data(json.dumps(body).encode())
            payload.feed_eof()
            headers["Content-Type"] = "application/json"
            extra["payload"] = payload
        request = make_mocked_request(method, path, headers=headers, app=self.app, sslcontext=_TLS, **extra)
        response = await dispatch(request)
        assert isinstance(response, web.Response)
        return Answer(response.status, dict(response.headers), bytes(response.body or b""))

    async def graph(self, path: str = f"{DEVICES}?$top=5", *, tenant: str | None = None) -> Answer:
        return await self.call("GET", path, audience=GRAPH, tenant=tenant)

    async def defender(self, path: str = f"{MACHINES}?$top=3") -> Answer:
        return await self.call("GET", path, audience=DEFENDER)

    async def customers(self, path: str = f"{CUSTOMERS}?size=2") -> Answer:
        return await self.call("GET", path, audience=PC)

    def faults(self, *rules: dict[str, Any]) -> list[FaultRule]:
        return self.server.faults.add(list(rules))


# ------------------------------------------------------------------ nextLink


async def test_next_link_graph_foreign_host_plain_http_and_placeholders() -> None:
    sim = Sim()
    original = (await sim.graph()).json()["@odata.nextLink"]
    assert original.startswith(f"{ORIGIN}/graph/v1.0/deviceManagement/managedDevices?")
    sim.faults(
        {
            "service": "graph",
            "pathContains": "managedDevices",
            "kind": "nextLink",
            "link": "https://attacker.invalid/x",
            "count": 1,
        },
        {
            "service": "graph",
            "kind": "nextLink",
            "link": f"http://{{host}}{DEVICES}?$top=5",
            "afterRequests": 1,
            "count": 1,
        },
        {"service": "graph", "kind": "nextLink", "link": "{origin}|{base}|{link}", "afterRequests": 2, "count": 1},
    )
    foreign = await sim.graph()
    assert foreign.status == 200
    page = foreign.json()
    assert page["@odata.nextLink"] == "https://attacker.invalid/x"
    assert list(page) == ["@odata.context", "@odata.nextLink", "value"]
    assert len(page["value"]) == 5
    assert (await sim.graph()).json()["@odata.nextLink"] == f"http://{HOST}{DEVICES}?$top=5"
    assert (await sim.graph()).json()["@odata.nextLink"] == f"{ORIGIN}|{ORIGIN}/graph|{original}"
    assert (await sim.graph()).json()["@odata.nextLink"] == original  # every rule has used its count


async def test_next_link_added_to_a_last_page_in_microsofts_place() -> None:
    sim = Sim()
    last = (await sim.graph(f"{DEVICES}?$top=999")).json()
    assert "@odata.nextLink" not in last
    sim.faults({"service": "graph", "kind": "nextLink", "link": "{base}/v1.0/deviceManagement/managedDevices?$top=999"})
    looped = (await sim.graph(f"{DEVICES}?$top=999")).json()
    assert looped["@odata.nextLink"] == f"{ORIGIN}/graph/v1.0/deviceManagement/managedDevices?$top=999"
    assert list(looped) == ["@odata.context", "@odata.nextLink", "value"]
    assert looped["value"] == last["value"]


async def test_next_link_defender_repeats_the_same_page() -> None:
    sim = Sim()
    first = await sim.defender()
    assert first.json()["@odata.nextLink"].startswith(f"{ORIGIN}/defender/api/machines?")
    sim.faults({"service": "defender", "kind": "nextLink", "link": "{base}/api/machines?$top=3&$skip=0"})
    repeated = await sim.defender()
    assert repeated.headers["Content-Type"].startswith("application/json")
    assert repeated.json()["@odata.nextLink"] == f"{ORIGIN}/defender/api/machines?$top=3&$skip=0"
    again = await sim.defender(repeated.json()["@odata.nextLink"].removeprefix(ORIGIN))
    assert [m["id"] for m in again.json()["value"]] == [m["id"] for m in first.json()["value"]]


async def test_next_link_partner_center_replaces_or_creates_links_next() -> None:
    sim = Sim()
    plain = (await sim.customers()).json()
    assert plain["links"]["next"]["headers"][0]["key"] == "MS-ContinuationToken"
    sim.faults({"service": "partnercenter", "kind": "nextLink", "link": "https://attacker.invalid{link}", "count": 1})
    page = (await sim.customers()).json()
    assert page["links"]["next"] == {
        **plain["links"]["next"],
        "uri": "https://attacker.invalid" + plain["links"]["next"]["uri"],
    }
    whole = (await sim.customers(f"{CUSTOMERS}?size=500")).json()
    assert "next" not in whole["links"]
    sim.faults({"service": "partnercenter", "kind": "nextLink", "link": "http://{host}/partnercenter/v1/customers"})
    created = (await sim.customers(f"{CUSTOMERS}?size=500")).json()
    assert created["links"]["next"] == {
        "uri": f"http://{HOST}/partnercenter/v1/customers",
        "method": "GET",
        "headers": [],
    }
    assert created["links"]["self"] == whole["links"]["self"]
    assert created["items"] == whole["items"]


# ------------------------------------------------------------------ corrupt


async def test_corrupt_graph_lone_surrogate_survives_as_an_escape() -> None:
    sim = Sim()
    sim.faults(
        {
            "service": "graph",
            "pathContains": "managedDevices",
            "kind": "corrupt",
            "field": "deviceName",
            "value": "\ud800",
            "records": 2,
        }
    )
    answer = await sim.graph()
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("application/json")
    answer.body.decode("ascii")  # ensure_ascii: the surrogate travels escaped, the body is plain ASCII
    assert b'"deviceName":"\\ud800"' in answer.body
    names = [d["deviceName"] for d in answer.json()["value"]]
    assert names[:2] == ["\ud800", "\ud800"]
    assert all(n != "\ud800" for n in names[2:])
    assert int(answer.headers.get("Content-Length", len(answer.body))) == len(answer.body)


async def test_corrupt_graph_huge_repeated_string_and_single_entity() -> None:
    sim = Sim()
    sim.faults({"service": "graph", "kind": "corrupt", "field": "deviceName", "value": "Zoë", "repeat": 100_000})
    listed = (await sim.graph()).json()["value"]
    assert all(d["deviceName"] == "Zoë" * 100_000 for d in listed)
    one = (await sim.graph(f"{DEVICES}/{listed[0]['id']}")).json()
    assert one["id"] == listed[0]["id"] and len(one["deviceName"]) == 300_000


async def test_corrupt_defender_number_where_a_string_belongs() -> None:
    sim = Sim()
    sim.faults({"service": "defender", "kind": "corrupt", "field": "aadDeviceId", "value": 12345, "records": 1})
    machines = (await sim.defender()).json()["value"]
    assert machines[0]["aadDeviceId"] == 12345
    assert all(not isinstance(m["aadDeviceId"], int) for m in machines[1:])


async def test_corrupt_partner_center_customers_items() -> None:
    sim = Sim()
    sim.faults(
        {
            "service": "partnercenter",
            "pathContains": "customers",
            "kind": "corrupt",
            "field": "companyProfile",
            "value": {"tenantId": None, "companyName": ["x"]},
        }
    )
    page = (await sim.customers()).json()
    assert len(page["items"]) == 2
    assert all(c["companyProfile"] == {"tenantId": None, "companyName": ["x"]} for c in page["items"])
    assert page["links"]["next"]["uri"].startswith("/v1/customers")  # only the items changed


# ------------------------------------------------------------------ truncate


async def test_truncate_keeps_status_and_content_type() -> None:
    sim = Sim()
    whole = await sim.graph()
    sim.faults({"service": "graph", "kind": "truncate", "count": 1})
    cut = await sim.graph()
    assert cut.status == 200 and cut.headers["Content-Type"] == whole.headers["Content-Type"]
    assert cut.body == whole.body[: len(whole.body) // 2]
    with pytest.raises(ValueError):
        json.loads(cut.body)
    sim.faults({"service": "defender", "kind": "truncate", "bytes": 10})
    machines = await sim.defender()
    assert machines.status == 200 and machines.body == b'{"@odata.c'
    sim.faults({"service": "partnercenter", "kind": "truncate", "bytes": 1})
    customers = await sim.customers()
    assert customers.status == 200 and customers.body == b"{"


# ------------------------------------------------------------------ matching


async def test_count_and_after_requests_limit_the_transform() -> None:
    sim = Sim()
    (rule,) = sim.faults(
        {"service": "graph", "kind": "corrupt", "field": "deviceName", "value": None, "afterRequests": 1, "count": 1}
    )
    names = []
    for _ in range(3):
        names.append([d["deviceName"] for d in (await sim.graph()).json()["value"]])
    assert None not in names[0] and names[1] == [None] * 5 and None not in names[2]
    assert (rule.matched, rule.fired) == (3, 1)


async def test_request_and_response_kinds_coexist() -> None:
    sim = Sim()
    corrupt, throttle = sim.faults(
        {"service": "graph", "kind": "corrupt", "field": "deviceName", "value": 1, "count": 1},
        {"service": "graph", "kind": "throttle", "retryAfter": "0", "count": 1},
    )
    throttled = await sim.graph()
    assert throttled.status == 429 and throttled.headers["Retry-After"] == "0"
    assert throttled.json()["error"]["code"] == "TooManyRequests"  # error bodies are never transformed
    assert corrupt.matched == 0
    page = await sim.graph()
    assert page.status == 200 and {d["deviceName"] for d in page.json()["value"]} == {1}
    assert (corrupt.fired, throttle.fired) == (1, 1)


async def test_tenant_path_and_service_scope_the_transform() -> None:
    sim = Sim()
    sim.faults({"service": "graph", "tenantId": sim.contoso, "pathContains": "managedDevices", "kind": "truncate"})
    assert json.loads((await sim.graph(tenant=sim.northwind)).body)
    assert json.loads((await sim.defender()).body)
    with pytest.raises(ValueError):
        json.loads((await sim.graph()).body)


async def test_scenario_tenant_faults_transform_only_that_tenant() -> None:
    spec = load_spec("demo")
    contoso = next(t for t in spec["tenants"] if t["key"] == "contoso")
    contoso["faults"] = [{"service": "graph", "kind": "corrupt", "field": "deviceName", "value": "\udfff"}]
    sim = Sim(spec)
    assert {d["deviceName"] for d in (await sim.graph()).json()["value"]} == {"\udfff"}
    assert "\udfff" not in {d["deviceName"] for d in (await sim.graph(tenant=sim.northwind)).json()["value"]}
    await sim.call("POST", "/_sim/reset")
    assert {d["deviceName"] for d in (await sim.graph()).json()["value"]} == {"\udfff"}


async def test_retry_after_zero_throttle() -> None:
    sim = Sim()
    sim.faults({"service": "defender", "kind": "throttle", "retryAfter": "0", "count": 1})
    sim.faults({"service": "partnercenter", "kind": "throttle", "retryAfter": 0, "count": 1})
    defender = await sim.defender()
    assert defender.status == 429 and defender.headers["Retry-After"] == "0"
    customers = await sim.customers()
    assert customers.status == 429 and customers.headers["Retry-After"] == "0"


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"kind": "nextLink"}, 'nextLink needs a string "link"'),
        ({"kind": "nextLink", "link": 5}, 'nextLink needs a string "link"'),
        ({"kind": "corrupt", "value": 1}, 'corrupt needs a non-empty string "field"'),
        ({"kind": "corrupt", "field": ["deviceName"]}, 'corrupt needs a non-empty string "field"'),
        ({"kind": "corrupt", "field": "x", "records": 0}, "records must be a positive integer"),
        ({"kind": "corrupt", "field": "x", "records": "2"}, "records must be a positive integer"),
        ({"kind": "corrupt", "field": "x", "repeat": 3}, 'repeat needs a non-empty string "value"'),
        ({"kind": "corrupt", "field": "x", "value": "a", "repeat": True}, "repeat must be a positive integer"),
        ({"kind": "corrupt", "field": "x", "value": "ab", "repeat": 10**9}, "exceeds"),
        ({"kind": "truncate", "bytes": 0}, "bytes must be a positive integer"),
        ({"kind": "truncate", "bytes": 1.5}, "bytes must be a positive integer"),
        ({"kind": "status", "link": "x"}, "link is only valid for kind 'nextLink'"),
        ({"kind": "nextLink", "link": "x", "bytes": 3}, "bytes is only valid for kind 'truncate'"),
        ({"kind": "truncate", "feild": "x"}, "unknown rule field(s) ['feild']"),
        ({"kind": "mangle"}, "kind must be one of"),
        ({"kind": "corrupt", "field": "x", "count": -1}, "count must be a whole number >= 0"),
        ({"kind": "truncate", "rate": 2}, "rate must be between 0 and 1"),
        ({"kind": "truncate", "pathContains": 7}, "pathContains must be a string"),
    ],
)
def test_rule_validation(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match="rules\\[1\\]: ") as caught:
        FaultEngine(1).add([{"kind": "truncate"}, rule])
    assert message in str(caught.value)


def test_valid_rules_round_trip() -> None:
    engine = FaultEngine(1)
    rules = engine.add(
        [
            {"kind": "nextLink", "link": "{link}"},
            {"kind": "corrupt", "field": "id", "value": "\ud800", "records": 1, "repeat": 2},
            {"kind": "truncate", "bytes": 7, "service": "vault"},
            {"kind": "throttle", "retryAfter": "0"},
        ]
    )
    assert [r.id for r in rules] == [1, 2, 3, 4]
    assert rules[1].corrupt_value() == "\ud800\ud800"
    assert rules[3].retryAfter == "0" and rules[3].status == 429
    again = FaultEngine(1).add([r.to_json() for r in rules])  # GET output may be posted back
    assert [r.to_json() | {"id": 0} for r in again] == [r.to_json() | {"id": 0} for r in rules]


async def test_fault_api_rejects_bad_rules_with_400_and_adds_none() -> None:
    sim = Sim()
    bad = await sim.call(
        "POST", "/_sim/faults", body={"rules": [{"kind": "truncate"}, {"kind": "truncate", "bytes": -1}]}
    )
    assert bad.status == 400
    assert bad.json()["error"]["message"] == "invalid fault rule: rules[1]: bytes must be a positive integer, got -1"
    assert (await sim.call("GET", "/_sim/faults")).json() == {"rules": []}
    good = await sim.call(
        "POST",
        "/_sim/faults",
        body={"rules": [{"service": "graph", "kind": "corrupt", "field": "deviceName", "value": "\ud800", "count": 1}]},
    )
    assert good.status == 201 and good.json()["rules"][0]["value"] == "\ud800"
    assert b"\\ud800" in (await sim.graph()).body


def test_scenario_fault_errors_name_the_tenant() -> None:
    spec = load_spec("demo")
    spec["tenants"][1]["faults"] = [{"kind": "corrupt"}]
    with pytest.raises(ValueError, match=r"tenant 'northwind': faults\[0\]: kind corrupt needs"):
        build_simulation(spec)
