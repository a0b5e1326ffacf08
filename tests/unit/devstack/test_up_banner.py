"""`make up`'s banner: where things are, how the console signs in, and the README's variables with ids that
exist in the stack."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from devstack.up import banner

pytestmark = pytest.mark.unit

STACK = SimpleNamespace(function_key="k3y", base_url="http://127.0.0.1:7071/api", sim_url="https://127.0.0.1:8443",
                        host_log="/tmp/host.log")


def test_the_banner_names_the_registered_msp_and_sets_the_readme_variables():
    text = banner(STACK, {"id": "a0000000-0000-4000-8000-000000000001", "displayName": "Fabrikam IT Services"},
                  {"tenantId": "b0000000-0000-4000-8000-000000000002", "displayName": "Contoso Ltd"})
    assert "Registered    Fabrikam IT Services (the simulator's demo MSP)" in text
    lines = text.splitlines()
    assert "BASE=http://127.0.0.1:7071/api" in lines and "KEY=k3y" in lines
    assert "ID=a0000000-0000-4000-8000-000000000001" in lines
    assert any(line.startswith("TENANT=b0000000-0000-4000-8000-000000000002") for line in lines)
    assert "/console?code=k3y" in text and "Entra ID sign-in is not configured" in text


def test_without_a_registration_the_banner_says_so_and_sets_no_ids():
    text = banner(STACK, None, None)
    assert "not registered" in text and "ID=" not in text and "KEY=k3y" in text
