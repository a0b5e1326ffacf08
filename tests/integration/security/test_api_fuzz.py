"""Property-based fuzzing of the HTTP API from its own OpenAPI document (schemathesis), against the local
Functions host with the function key, on a stack where the demo MSP is registered and synced.

For every operation the app serves, a bounded number of generated requests (valid and invalid): no 5xx,
every 4xx a problem document (`application/problem+json` with the fields of docs/api.md), no response slower than
2 s. Operations the document lists but the app does not (yet) serve are left out and named in the report.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error

from devstack.stack import REPO_ROOT
from tests.integration.support import api_client, wait_for_tenants

pytestmark = pytest.mark.integration
SCENARIO = "demo"
MAX_SECONDS = 2.0
EXAMPLES = 60
COUNTS = {"cases": 0, "passed": 0}

_SERVED = """
import json, function_app
triggers = [f.get_trigger().get_dict_repr() for f in function_app.app.get_functions()]
print(json.dumps([{"route": t.get("route"), "methods": [str(getattr(m, "value", m)) for m in t.get("methods") or []]}
                  for t in triggers if t.get("type") == "httpTrigger"]))
"""


def _served_operations() -> set[tuple[str, str]]:
    done = subprocess.run([sys.executable, "-c", _SERVED], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=60, check=True)
    routes = json.loads(done.stdout.strip().splitlines()[-1])
    return {(m.upper(), "/api/" + re.sub(r"\{[^}]+\}", "{}", r["route"])) for r in routes for m in r["methods"]}


@pytest.fixture(scope="module")
def api_schema(stack, scenario, secret_scan) -> Any:
    with api_client(stack, secret_scan.recorder) as api:
        body = scenario["registrations"][0]
        response = api.post("/integrations", json=body)
        assert response.status_code == 201, response.text
        wait_for_tenants(api, response.json()["id"])
    return schemathesis.openapi.from_url(f"http://127.0.0.1:{stack.ports.host}/api/openapi.json")


@schemathesis.check
def problem_document(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx/5xx is an RFC 9457 problem document with the fields of docs/api.md."""
    if response.status_code < 400:
        return None
    content_type = response.headers.get("content-type", response.headers.get("Content-Type", ""))
    if isinstance(content_type, list):
        content_type = content_type[0]
    assert content_type.startswith("application/problem+json"), (response.status_code, content_type)
    doc = json.loads(response.content)
    assert set(doc) == {"type", "title", "status", "detail", "errors"}, doc
    assert doc["status"] == response.status_code
    for error in doc["errors"]:
        assert set(error) == {"field", "code", "message", "action"}, error
    return True


@schemathesis.check
def fast_enough(ctx: Any, response: Any, case: Any) -> bool | None:
    assert response.elapsed <= MAX_SECONDS, f"{case.method} {case.path} took {response.elapsed:.2f} s"
    return True


def _operations() -> list[tuple[str, str]]:
    from shared.api.openapi import build_openapi

    methods = {"get", "put", "post", "delete", "patch"}
    return [(m.upper(), path) for path, item in build_openapi()["paths"].items() for m in item if m in methods]


# The pytest plugin of schemathesis 4.32 does not run under pytest 9 ('Function' object has no attribute
# '_nodeid'), so each operation's strategy is driven by hypothesis directly (schemathesis' Python API).
@pytest.mark.parametrize(("method", "path"), _operations(), ids=[f"{m} {p}" for m, p in _operations()])
@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_the_api_never_fails_from_its_own_document(api_schema, stack, method, path, mode):
    from hypothesis import given
    from schemathesis import GenerationMode

    operations = {f"{op.method.upper()} {op.path}": op for op in
                  (result.ok() for result in api_schema.get_all_operations())}
    served = (method, re.sub(r"\{[^}]+\}", "{}", path)) in _served_operations_cached()
    found = operations.get(f"{method} {path}") if served else None
    if not served:
        pytest.skip(f"{method} {path} is in openapi.json but function_app.py does not serve it")
    if found is None:
        pytest.skip(f"{method} {path}: schemathesis leaves out the URL it loaded the document from")
    strategy = found.as_strategy(generation_mode=GenerationMode(mode))

    @given(case=strategy)
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def fuzz(case: Any) -> None:
        COUNTS["cases"] += 1
        case.call_and_validate(
            headers={"x-functions-key": stack.function_key},
            checks=[not_a_server_error, problem_document, fast_enough],
            timeout=10,
        )
        COUNTS["passed"] += 1

    try:
        fuzz()
    except Unsatisfiable:  # nothing to make invalid (no parameters, no body)
        pytest.skip(f"{method} {path}: no {mode} case can be generated")


_SERVED_CACHE: dict[str, set[tuple[str, str]]] = {}


def _served_operations_cached() -> set[tuple[str, str]]:
    if "ops" not in _SERVED_CACHE:
        _SERVED_CACHE["ops"] = _served_operations()
    return _SERVED_CACHE["ops"]


def test_fuzz_figures(api_schema, request):
    """Runs after the fuzzing in this module: its totals for `make reliability`."""
    assert COUNTS["cases"] > 0, "no fuzz case ran"
    request.node.user_properties.append(("reliability.fuzzCases", COUNTS["cases"]))
    request.node.user_properties.append(("reliability.fuzzPassed", COUNTS["passed"]))
    unserved = sorted({(m, p) for m, p in _operations()
                       if (m, re.sub(r"\{[^}]+\}", "{}", p)) not in _served_operations_cached()})
    request.node.user_properties.append(("reliability.fuzzUnservedOperations", len(unserved)))
