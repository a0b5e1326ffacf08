"""The OpenAPI document: valid 3.1 structure, every route the app declares, every reference resolvable."""

from __future__ import annotations

import re
from typing import Any

import pytest

from shared.api.openapi import build_openapi

from .appfunctions import app_functions

pytestmark = pytest.mark.unit

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def _declared_routes() -> set[tuple[str, str]]:
    """(method, /api/route) of every HTTP function function_app.py registers, from its bindings."""
    routes = set()
    for _, _, bindings in app_functions():
        for binding in bindings:
            if binding.get("type") == "httpTrigger":
                for method in binding.get("methods") or []:
                    routes.add((method.lower(), "/api/" + binding["route"]))
    return routes


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_top_level_structure_is_openapi_3_1():
    doc = build_openapi()
    assert re.fullmatch(r"3\.1\.\d+", doc["openapi"])
    assert {"title", "version"} <= set(doc["info"])
    assert set(doc) <= {
        "openapi",
        "info",
        "jsonSchemaDialect",
        "servers",
        "paths",
        "webhooks",
        "components",
        "security",
        "tags",
        "externalDocs",
    }
    schemes = doc["components"]["securitySchemes"]
    assert schemes["functionKey"] == {
        **schemes["functionKey"],
        "type": "apiKey",
        "in": "header",
        "name": "x-functions-key",
    }
    assert schemes["functionKeyQuery"] == {
        **schemes["functionKeyQuery"],
        "type": "apiKey",
        "in": "query",
        "name": "code",
    }


def test_every_route_of_the_app_and_of_the_contract_is_described():
    doc = build_openapi()
    described = {(m, p.replace("{tenantId}", "{tenantId}")) for p, item in doc["paths"].items() for m in item}
    contract = {
        ("post", "/api/integrations"),
        ("get", "/api/integrations"),
        ("get", "/api/integrations/{id}"),
        ("put", "/api/integrations/{id}/secrets"),
        ("post", "/api/integrations/{id}/sync"),
        ("delete", "/api/integrations/{id}"),
        ("get", "/api/integrations/{id}/tenants"),
        ("get", "/api/integrations/{id}/tenants/{tenantId}/devices"),
        ("get", "/api/integrations/{id}/tenants/{tenantId}/software"),
        ("get", "/api/alerts"),
        ("get", "/api/health"),
        ("get", "/api/openapi.json"),
    }
    inventory = {
        ("get", "/api/integrations/{id}/tenants/{tenantId}/devices/{deviceId}/software"),
        ("get", "/api/integrations/{id}/tenants/{tenantId}/software/{softwareId}/devices"),
    }
    gdap = {
        ("post", "/api/integrations/{id}/partner-signin"),
        ("get", "/api/integrations/{id}/partner-signin"),
        ("post", "/api/integrations/{id}/tenants/{tenantId}/consent"),
        ("post", "/api/integrations/{id}/consent"),
    }
    assert contract | inventory | gdap <= described
    # The enumeration below sees every blueprint function_app.py registers, the inventory and GDAP ones too.
    assert inventory | gdap <= _declared_routes()
    # Every HTTP function the app declares is in the document (console pages excepted: HTML, not API).
    assert {r for r in _declared_routes() if not r[1].startswith("/api/console")} <= described


def test_operations_are_well_formed():
    doc = build_openapi()
    ids = []
    for path, item in doc["paths"].items():
        template_params = set(re.findall(r"{(\w+)}", path))
        for method, op in item.items():
            assert method in METHODS
            ids.append(op["operationId"])
            assert op["responses"]
            declared = {p["name"] for p in op["parameters"] if p["in"] == "path"}
            assert declared == template_params, (method, path)
            for p in op["parameters"]:
                assert p["in"] in {"path", "query", "header", "cookie"}
                assert "schema" in p
                if p["in"] == "path":
                    assert p["required"] is True
            for status, response in op["responses"].items():
                assert re.fullmatch(r"[1-5]\d\d", status)
                assert response["description"]
                if int(status) >= 400 and "content" in response:
                    assert "application/problem+json" in response["content"]
    assert len(ids) == len(set(ids))


def test_inventory_lists_and_alert_filters_are_described():
    doc = build_openapi()
    for path, item_model in (
        ("/api/integrations/{id}/tenants/{tenantId}/devices/{deviceId}/software", "SoftwareList"),
        ("/api/integrations/{id}/tenants/{tenantId}/software/{softwareId}/devices", "DeviceList"),
    ):
        op = doc["paths"][path]["get"]
        assert {p["name"] for p in op["parameters"] if p["in"] == "query"} == {"top", "continuation"}
        assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/" + item_model)
        for status in ("400", "404", "500"):
            assert "application/problem+json" in op["responses"][status]["content"]
    lists = doc["components"]["schemas"]
    for name in ("SoftwareList", "DeviceList"):
        assert set(lists[name]["properties"]) == {"value", "nextLink"}
        assert lists[name]["required"] == ["value"]
    alerts = {p["name"]: p for p in doc["paths"]["/api/alerts"]["get"]["parameters"]}
    assert set(alerts) == {"top", "continuation", "integrationId", "status"}
    assert alerts["integrationId"]["schema"]["format"] == "uuid"
    assert alerts["status"]["schema"]["enum"] == ["open", "resolved"]
    assert not any(p["required"] for p in alerts.values())


def test_anonymous_operations_opt_out_of_the_key():
    doc = build_openapi()
    assert doc["paths"]["/api/health"]["get"]["security"] == []
    assert doc["paths"]["/api/openapi.json"]["get"]["security"] == []
    assert "security" not in doc["paths"]["/api/integrations"]["post"]


def test_every_reference_resolves_and_schemas_come_from_the_models():
    doc = build_openapi()
    schemas = doc["components"]["schemas"]
    for ref in _refs(doc):
        assert ref.startswith("#/components/schemas/")
        assert ref.rsplit("/", 1)[-1] in schemas
    multi = schemas["MultiTenantRegistration"]
    assert multi["additionalProperties"] is False
    assert {"partnerTenantId", "partnerAppId", "partnerAppSecret", "syncAppId", "syncAppSecret"} <= set(
        multi["required"]
    )
    assert multi["properties"]["partnerAppSecret"]["writeOnly"] is True
    body = doc["paths"]["/api/integrations"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["discriminator"]["propertyName"] == "kind"
    problem = schemas["ProblemOut"]
    assert set(problem["required"]) == {"type", "title", "status", "detail", "errors"}
    integration = schemas["IntegrationOut"]["properties"]
    assert {
        "id",
        "kind",
        "displayName",
        "status",
        "syncAppId",
        "includeDefender",
        "tenantFilter",
        "secrets",
        "createdAt",
        "error",
    } <= set(integration)
    assert set(schemas["SecretInfo"]["properties"]) == {"name", "appId", "expiresOn", "expiresOnSource"}
    device = set(schemas["DeviceOut"]["properties"])
    assert {"azureADDeviceId", "wiFiMacAddress", "removedAt", "defender"} <= device
