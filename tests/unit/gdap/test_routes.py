"""The GDAP blueprint's routes: key-protected, and each described in /api/openapi.json."""

from __future__ import annotations

import json

import azure.functions as func
import pytest

from shared.api.openapi import build_openapi

pytestmark = pytest.mark.unit


def test_every_gdap_route_needs_the_key_and_is_in_the_openapi_document():
    from functions.gdap import bp

    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    app.register_functions(bp)
    declared = set()
    for function in app.get_functions():
        for binding in (json.loads(b) for b in function.get_raw_bindings()):
            if binding.get("type") == "httpTrigger":
                assert binding["authLevel"] == "FUNCTION"
                declared |= {(m.lower(), "/api/" + binding["route"]) for m in binding["methods"]}
    assert declared == {
        ("post", "/api/integrations/{id}/partner-signin"),
        ("get", "/api/integrations/{id}/partner-signin"),
        ("post", "/api/integrations/{id}/tenants/{tenantId}/consent"),
        ("post", "/api/integrations/{id}/consent"),
    }
    paths = build_openapi()["paths"]
    assert {(m, p) for p, item in paths.items() for m in item} >= declared
    tenant = build_openapi()["components"]["schemas"]["TenantOut"]["properties"]
    assert "access" in tenant
