"""Who may call what: every HTTP function that `function_app.py` declares, enumerated from the app itself
(`app.get_functions()`, in a subprocess: indexing twice in one process raises), is called without a key,
with a wrong key (header and `?code=`), and with the right one.

Only `health`, `openapi.json` and `console` (a static shell whose data needs the key) answer without a
key; everything else answers 401 to a missing or wrong key, and the 401 says nothing.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid

import httpx
import pytest

from devstack.stack import REPO_ROOT

pytestmark = pytest.mark.integration
SCENARIO = "demo"
ANONYMOUS = {"health", "openapi.json", "console"}

_ENUMERATE = """
import json, function_app
out = []
for f in function_app.app.get_functions():
    d = f.get_trigger().get_dict_repr()
    if d.get("type") == "httpTrigger":
        out.append({"name": f.get_function_name(), "route": d.get("route"),
                    "methods": [str(getattr(m, "value", m)) for m in d.get("methods") or []],
                    "authLevel": str(getattr(d.get("authLevel"), "name", d.get("authLevel")))})
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def routes() -> list[dict[str, object]]:
    done = subprocess.run([sys.executable, "-c", _ENUMERATE], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=60, check=True)
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def _path(route: str) -> str:
    # A well-formed GUID for every parameter: the key check comes before any lookup.
    return re.sub(r"\{[^}]+\}", lambda _: str(uuid.uuid4()), route)


def test_only_health_openapi_and_console_are_anonymous(routes):
    anonymous = {r["route"] for r in routes if str(r["authLevel"]).upper() == "ANONYMOUS"}
    assert anonymous == ANONYMOUS
    assert len(routes) >= 12


def test_every_other_route_refuses_a_missing_or_wrong_key(stack, routes, secret_scan, request):
    checked = 0
    with httpx.Client(base_url=stack.base_url, timeout=30, event_hooks={"response": [secret_scan.recorder]}) as http:
        for route in routes:
            if route["route"] in ANONYMOUS:
                continue
            for method in route["methods"] or ["GET"]:
                path = "/" + _path(str(route["route"]))
                body = {"json": {}} if method in ("POST", "PUT") else {}
                attempts = {
                    "no key": http.request(method, path, **body),
                    "wrong key header": http.request(method, path, headers={"x-functions-key": "wrong"}, **body),
                    "wrong code": http.request(method, path, params={"code": "wrong"}, **body),
                    "key of another case": http.request(
                        method, path, headers={"x-functions-key": stack.function_key.upper()}, **body),
                }
                for how, response in attempts.items():
                    assert response.status_code == 401, (method, path, how, response.status_code)
                    assert stack.function_key not in response.text
                    checked += 1
                right = http.request(method, path, headers={"x-functions-key": stack.function_key}, **body)
                assert right.status_code != 401, (method, path)
                assert right.status_code < 500, (method, path, right.text)
    request.node.user_properties.append(("reliability.unauthorizedRefused", checked))


def test_the_anonymous_routes_answer_without_a_key_and_hold_no_data(stack, secret_scan):
    with httpx.Client(base_url=stack.base_url, timeout=30, event_hooks={"response": [secret_scan.recorder]}) as http:
        health = http.get("/health")
        assert health.status_code == 200 and health.json()["status"]
        spec = http.get("/openapi.json")
        assert spec.status_code == 200 and spec.json()["openapi"].startswith("3.1")
        console = http.get("/console")
        assert console.status_code == 200 and console.headers["content-type"].startswith("text/html")
        assert stack.function_key not in console.text
        # The console's data comes from the keyed API: without the key it gets nothing.
        assert http.get("/integrations").status_code == 401


def test_the_host_admin_api_needs_the_key(stack):
    response = httpx.post(f"http://127.0.0.1:{stack.ports.host}/admin/functions/sync_schedule",
                          headers={"x-functions-key": "wrong"}, json={"input": ""}, timeout=30)
    assert response.status_code == 401
