"""The stack the benchmark runs against: Azurite + the cloud simulator (+ the local Functions host for
the host case), with the simulated latency applied to every Microsoft endpoint.

TLS trust must be in the environment before aiohttp (azure-core's transport) is imported (FACTS.md), so
`prepare_tls()` runs first, exactly as tests/conftest.py does.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

LATENCY_MS = 50
LATENCY_RULE = {"rules": [{"service": "*", "kind": "latency", "latencyMs": LATENCY_MS, "jitterMs": 0}]}


def prepare_tls() -> Path:
    state = Path(tempfile.mkdtemp(prefix="memsync-bench-"))
    tls = state / "tls"
    from devstack.cloudsim.tls import generate_tls

    generate_tls(tls)
    os.environ["SSL_CERT_FILE"] = str(tls / "ca.pem")
    os.environ["REQUESTS_CA_BUNDLE"] = str(tls / "ca.pem")
    return state


def start_stack(scenario_file: Path, state: Path, name: str, *, host: bool) -> Any:
    """A DevStack on free ports; without the host, only Azurite and the simulator."""
    from devstack.stack import DevStack, StackPorts

    stack = DevStack(scenario=str(scenario_file), ports=StackPorts.free(), workdir=state / name,
                     tls_dir=state / "tls")
    if host:
        stack.start()
    else:
        try:
            stack.azurite.start()
            stack._start_simulator()  # the stack's own start, minus the Functions host
        except BaseException:
            stack.stop()
            raise
    set_latency(stack)
    return stack


def set_latency(stack: Any) -> None:
    with stack.sim() as sim:
        sim.delete("/faults").raise_for_status()
        sim.post("/faults", json=LATENCY_RULE).raise_for_status()


def sim_get(stack: Any, path: str, **params: Any) -> Any:
    with stack.sim() as sim:
        response = sim.get(path, params=params)
        response.raise_for_status()
        return response.json()


def sim_call(stack: Any, method: str, path: str, **kwargs: Any) -> Any:
    with stack.sim() as sim:
        response = sim.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None


def last_seq(stack: Any) -> int:
    return int(sim_get(stack, "/requests", since="999999999")["lastSeq"])


def requests_since(stack: Any, seq: int, tenant_id: str | None = None) -> list[dict[str, Any]]:
    params = {"since": str(seq)}
    if tenant_id:
        params["tenantId"] = tenant_id
    return list(sim_get(stack, "/requests", **params)["value"])


async def build_runtime(stack: Any) -> Any:
    from shared.runtime import Runtime
    from shared.settings import load_settings

    return await Runtime.build(load_settings(stack.app_env())).start()


async def store_integration(rt: Any, registration: dict[str, Any]) -> Any:
    """What registration stores (secrets in the vault, the integration row), without the HTTP API."""
    from pydantic import SecretStr

    from shared.clients.keyvault import secret_name
    from shared.models import AppRole, Integration, IntegrationKind, SecretRef

    integration_id = str(uuid.uuid4())
    roles = [(AppRole.SYNC, registration["syncAppId"], registration["syncAppSecret"])]
    if registration["kind"] == "multiTenant":
        roles.append((AppRole.PARTNER, registration["partnerAppId"], registration["partnerAppSecret"]))
    refs = []
    for role, app_id, value in roles:
        name = secret_name(integration_id, role)
        version = await rt.secrets.set_secret(name, SecretStr(value), expires_on=None,
                                              tags={"integrationId": integration_id, "role": role.value})
        refs.append(SecretRef(name=name, role=role, app_id=app_id, version=version))
    integration = Integration(
        id=integration_id, kind=IntegrationKind(registration["kind"]), display_name=registration["displayName"],
        partner_tenant_id=registration.get("partnerTenantId"), tenant_id=registration.get("tenantId"),
        partner_app_id=registration.get("partnerAppId"), sync_app_id=registration["syncAppId"],
        include_defender=registration.get("includeDefender", True), secrets=refs, created_at=datetime.now(UTC),
    )
    await rt.integrations.create_integration(integration)
    return integration


async def record(rt: Any, integration: Any) -> list[Any]:
    from shared.http import CallStats
    from shared.services.fanout import discover_customers, record_tenants

    return list(await record_tenants(rt, integration, await discover_customers(rt, integration, CallStats())))


def job(integration: Any, tenant_id: str) -> Any:
    from shared.stores.queues import SyncJob

    return SyncJob.model_validate({"integrationId": integration.id, "tenantId": tenant_id,
                                   "runId": str(uuid.uuid4()), "trigger": "manual"})
