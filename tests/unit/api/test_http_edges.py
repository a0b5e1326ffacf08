"""The API's HTTP edge, through the real user functions and real `func.HttpRequest`s.

Every request here fails before the runtime is needed: parsing comes first in each function.
"""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func
import pytest

from functions.http_problems import next_link
from shared.api.views import CsvWriter

from .appfunctions import user_functions

pytestmark = pytest.mark.unit

SECRET = "Qx8~veryS3cretValue.ThatMust-NeverBeEchoed_12345"
GUID = "8f3c2a1e-0b6d-4c5e-9a7f-1d2e3f4a5b6c"


FUNCTIONS = user_functions()


def request(
    method: str,
    path: str,
    *,
    body: bytes | str | dict[str, Any] = b"",
    content_type: str | None = "application/json",
    params: dict[str, str] | None = None,
    route: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> func.HttpRequest:
    raw = (
        json.dumps(body).encode()
        if isinstance(body, dict)
        else body.encode()
        if isinstance(body, str)
        else body
    )
    all_headers = dict(headers or {})
    if content_type:
        all_headers["Content-Type"] = content_type
    return func.HttpRequest(
        method,
        f"http://localhost:7071/api/{path}",
        headers=all_headers,
        params=params or {},
        route_params=route or {},
        body=raw,
    )


async def call(name: str, req: func.HttpRequest) -> tuple[int, dict[str, Any], func.HttpResponse]:
    response = await FUNCTIONS[name](req)
    text = response.get_body().decode()
    return response.status_code, (json.loads(text) if text else {}), response


def assert_problem(status: int, doc: dict[str, Any], response: func.HttpResponse, expected: int) -> None:
    assert status == expected
    assert response.mimetype == "application/problem+json"
    assert set(doc) == {"type", "title", "status", "detail", "errors"}
    assert doc["status"] == expected
    for error in doc["errors"]:
        assert set(error) == {"field", "code", "message", "action"}
        assert all(isinstance(v, str) for v in error.values())
        assert error["action"]


async def test_registration_lists_every_bad_field_at_once_and_never_echoes_a_secret():
    body = {
        "kind": "multiTenant",
        "displayName": "  ",
        "partnerTenantId": "not-a-guid",
        "partnerAppId": GUID,
        "partnerAppSecret": "   ",
        "syncAppId": "x" * 5,
        "syncAppSecret": SECRET * 30,
        "includeDefender": "yes",
        "partnerAppSecretExpiresOn": "2027-05-01",
        "surprise": SECRET,
        "tenantFilter": {"include": [GUID, "nope"], "exclude": []},
    }
    status, doc, response = await call("register_integration", request("POST", "integrations", body=body))
    assert_problem(status, doc, response, 400)
    found = {(e["field"], e["code"]) for e in doc["errors"]}
    assert found == {
        ("displayName", "blank"),
        ("partnerTenantId", "invalidGuid"),
        ("partnerAppSecret", "blank"),
        ("syncAppId", "invalidGuid"),
        ("syncAppSecret", "invalidLength"),
        ("includeDefender", "invalidType"),
        ("partnerAppSecretExpiresOn", "invalidDateTime"),
        ("surprise", "unknownField"),
        ("tenantFilter.include[1]", "invalidGuid"),
    }
    assert SECRET[:12] not in response.get_body().decode()


async def test_every_missing_field_is_named_and_kind_defaults_to_multi_tenant():
    status, doc, response = await call("register_integration", request("POST", "integrations", body={}))
    assert_problem(status, doc, response, 400)
    assert {e["field"] for e in doc["errors"] if e["code"] == "required"} == {
        "partnerTenantId",
        "partnerAppId",
        "partnerAppSecret",
        "syncAppId",
        "syncAppSecret",
    }


async def test_single_tenant_body_refuses_partner_fields_and_tenant_filter():
    body = {
        "kind": "singleTenant",
        "tenantId": GUID,
        "syncAppId": GUID,
        "syncAppSecret": SECRET,
        "partnerAppSecret": SECRET,
        "tenantFilter": {},
    }
    status, doc, response = await call("register_integration", request("POST", "integrations", body=body))
    assert_problem(status, doc, response, 400)
    assert {(e["field"], e["code"]) for e in doc["errors"]} == {
        ("partnerAppSecret", "unknownField"),
        ("tenantFilter", "unknownField"),
    }
    assert SECRET not in response.get_body().decode()


async def test_unknown_kind_is_one_problem_on_kind():
    status, doc, response = await call(
        "register_integration", request("POST", "integrations", body={"kind": "everything"})
    )
    assert_problem(status, doc, response, 400)
    assert [(e["field"], e["code"]) for e in doc["errors"]] == [("kind", "invalidValue")]


@pytest.mark.parametrize(
    ("body", "content_type", "expected", "code"),
    [
        (b'{"kind": "multiTenant",', "application/json", 400, "malformedJson"),
        (b'["a list"]', "application/json", 400, "malformedJson"),
        (b'{"a": 1, "a": 2}', "application/json", 400, "malformedJson"),
        (b'{"a": NaN}', "application/json", 400, "malformedJson"),
        (b"\xff\xfe{}", "application/json", 400, "malformedJson"),
        (b"", "application/json", 400, "malformedJson"),
        (b'{"kind": "multiTenant"}', "text/plain", 415, "unsupportedMediaType"),
        (b'{"kind": "multiTenant"}', None, 415, "unsupportedMediaType"),
        (b'{"kind": "multiTenant"}', "application/json; charset=latin-1", 415, "unsupportedMediaType"),
        (b'{"x": "' + b"a" * 70_000 + b'"}', "application/json", 413, "bodyTooLarge"),
        (b"[" * 100_000, "application/json", 413, "bodyTooLarge"),
        (b"[" * 60_000, "application/json", 400, "malformedJson"),
    ],
)
async def test_bodies_that_are_not_a_json_object_are_problems(body, content_type, expected, code):
    req = request("POST", "integrations", body=body, content_type=content_type)
    status, doc, response = await call("register_integration", req)
    assert_problem(status, doc, response, expected)
    assert doc["errors"][0]["code"] == code


@pytest.mark.parametrize(
    "bad_id",
    ["not-a-guid", "../../etc/passwd", "..%2F..%2Fx", f"{GUID}' or PartitionKey ne '", "", GUID + "0"],
)
@pytest.mark.parametrize(
    ("name", "method", "suffix"),
    [
        ("get_integration", "GET", ""),
        ("delete_integration", "DELETE", ""),
        ("list_integration_tenants", "GET", "/tenants"),
        ("sync_integration", "POST", "/sync"),
        ("rotate_integration_secrets", "PUT", "/secrets"),
    ],
)
async def test_ids_that_are_not_guids_are_400_problems(bad_id, name, method, suffix):
    req = request(
        method, f"integrations/{bad_id}{suffix}", route={"id": bad_id}, body={"syncAppSecret": SECRET}
    )
    status, doc, response = await call(name, req)
    assert_problem(status, doc, response, 400)
    assert doc["errors"][0] == {**doc["errors"][0], "field": "id", "code": "invalidGuid"}
    assert bad_id not in doc["detail"] or bad_id == ""


@pytest.mark.parametrize(
    ("params", "fields"),
    [
        ({"top": "0"}, {"top"}),
        ({"top": "1001"}, {"top"}),
        ({"top": "ten"}, {"top"}),
        ({"$filter": "PartitionKey ne ''"}, {"$filter"}),
        ({"complianceState": "compliant' or '1' eq '1"}, {"complianceState"}),
        ({"removed": "maybe", "format": "xml"}, {"removed", "format"}),
        ({"continuation": "eyJ2IjoxfQ"}, {"continuation"}),
        ({"continuation": "../../x"}, {"continuation"}),
        ({"search": "a" * 101}, {"search"}),
    ],
)
async def test_device_query_problems_are_listed_together(params, fields):
    req = request("GET", "x", params=params, route={"id": GUID, "tenantId": GUID})
    status, doc, response = await call("list_tenant_devices", req)
    assert_problem(status, doc, response, 400)
    assert {e["field"] for e in doc["errors"]} == fields


async def test_tenant_id_of_asset_routes_is_validated():
    req = request("GET", "x", route={"id": GUID, "tenantId": "..\\..\\boot.ini"})
    status, doc, response = await call("list_tenant_software", req)
    assert_problem(status, doc, response, 400)
    assert doc["errors"][0]["field"] == "tenantId"


async def test_rotation_body_is_validated_without_echoing_the_secret():
    req = request(
        "PUT",
        "x",
        route={"id": GUID},
        body={"syncAppSecret": SECRET, "syncAppSecretExpiresOn": "yesterday", "partnerAppSecret": 5},
    )
    status, doc, response = await call("rotate_integration_secrets", req)
    assert_problem(status, doc, response, 400)
    assert {(e["field"], e["code"]) for e in doc["errors"]} == {
        ("syncAppSecretExpiresOn", "invalidDateTime"),
        ("partnerAppSecret", "invalidType"),
    }
    assert SECRET not in response.get_body().decode()


async def test_sync_body_tenant_ids_must_be_guids():
    req = request("POST", "x", route={"id": GUID}, body={"tenantIds": [GUID, "zzz"]})
    status, doc, response = await call("sync_integration", req)
    assert_problem(status, doc, response, 400)
    assert [e["field"] for e in doc["errors"]] == ["tenantIds[1]"]


async def test_delete_purge_flag_must_be_boolean():
    req = request("DELETE", "x", route={"id": GUID}, params={"purgeAssets": "please"})
    status, doc, response = await call("delete_integration", req)
    assert_problem(status, doc, response, 400)
    assert doc["errors"][0]["field"] == "purgeAssets"


async def test_an_unexpected_exception_is_a_500_problem_without_internals(caplog):
    from functions.http_problems import problem_boundary

    @problem_boundary
    async def broken(req: func.HttpRequest) -> func.HttpResponse:
        raise RuntimeError(f"connection string with AccountKey={SECRET}")

    status, doc, response = await call_fn(broken, request("GET", "x"))
    assert_problem(status, doc, response, 500)
    assert doc["errors"][0]["code"] == "internalError"
    assert SECRET not in response.get_body().decode()
    assert SECRET not in caplog.text
    assert "RuntimeError" in caplog.text


async def call_fn(fn, req):
    response = await fn(req)
    return response.status_code, json.loads(response.get_body()), response


async def test_openapi_is_served_anonymously_as_json():
    status, doc, response = await call("openapi_document", request("GET", "openapi.json"))
    assert status == 200
    assert response.mimetype == "application/json"
    assert doc["openapi"].startswith("3.1")


@pytest.mark.parametrize(("host", "absolute"), [
    ("memsync.azurewebsites.net", True),
    ("MEMSYNC.azurewebsites.net", True),
    ("evil.example", False),
    ("memsync.azurewebsites.net.evil.example", False),
    ("memsync.azurewebsites.net:8443", False),
])
def test_next_link_is_absolute_only_on_the_platform_host_name(monkeypatch, host, absolute):
    monkeypatch.setenv("WEBSITE_HOSTNAME", "memsync.azurewebsites.net")
    req = func.HttpRequest(method="GET", url=f"https://{host}/api/integrations?top=1&code=k3y", headers={},
                           params={}, body=b"")
    link = next_link(req, {"top": 1, "continuation": "abc", "search": None})
    expected_path = "/api/integrations?top=1&continuation=abc"
    assert link == (f"https://{host}{expected_path}" if absolute else expected_path)


def test_next_link_is_relative_without_a_platform_host_name(monkeypatch):
    monkeypatch.delenv("WEBSITE_HOSTNAME", raising=False)
    req = func.HttpRequest(method="GET", url="http://127.0.0.1:7071/api/integrations", headers={}, params={},
                           body=b"")
    assert next_link(req, {"top": 5}) == "/api/integrations?top=5"


def test_csv_starts_with_a_byte_order_mark_for_excel_and_keeps_the_formula_guard():
    writer = CsvWriter(["id", "deviceName"])
    writer.write([{"id": "1", "deviceName": "=HYPERLINK(\"x\")"}, {"id": "2", "deviceName": "Zoë's PC"}])
    encoded = writer.text().encode("utf-8")
    assert encoded.startswith(b"\xef\xbb\xbfid,deviceName\r\n")
    assert encoded.decode("utf-8-sig").splitlines()[1:] == ["1,\"'=HYPERLINK(\"\"x\"\")\"", "2,Zoë's PC"]
