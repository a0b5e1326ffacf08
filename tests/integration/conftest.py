"""The local stack for integration tests: Azurite + the Microsoft cloud simulator + the Functions host.

Fixtures:
- `stack` (module scope): a `devstack.stack.DevStack` started for the module's `SCENARIO` (default
  "demo") on free ports. `stack.api()` is an httpx client for memsync's API with the function key,
  `stack.sim()` one for the simulator's control API; `stack.app_env()` the app settings;
  `stack.restart_host(kill=True)` kills and restarts the host; `stack.logs()` the processes' output.
- `scenario`: the simulator's `GET /_sim/scenario` (registrations, tenants and their expected results).
- `runtime`: a memsync `Runtime` in this process built from the stack's app settings, for
  service-level tests; closed after the test.
- `module_runtime`: the same for a module's own set-up fixtures (an integration stored once, its first
  sync), closed at the module's end. Like every async fixture here it runs on the session's event loop
  (`asyncio_default_fixture_loop_scope` in pyproject.toml), the loop the tests run on too.
- `secret_values`: every secret value the scenario holds, for the no-leak scans.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.stack import DevStack, StackPorts

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-output"


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest) -> Iterator[DevStack]:
    scenario = getattr(request.module, "SCENARIO", "demo")
    extra_env = getattr(request.module, "STACK_ENV", {})
    state = Path(os.environ["MEMSYNC_TEST_STATE_DIR"])
    workdir = state / f"stack-{request.module.__name__.rsplit('.', 1)[-1]}"
    devstack = DevStack(
        scenario=scenario, ports=StackPorts.free(), workdir=workdir, extra_env=extra_env,
        tls_dir=state / "tls",
    )
    devstack.start()
    found: list[str] = []
    try:
        yield devstack
        # Every stack ends with a scan of what it produced (logs, tables, queues, blobs) for the
        # secret values it held; a hit fails the module.
        from tests.integration.support import current_secret_values, leaks, stack_texts

        found = list(leaks(stack_texts(devstack, drain_queues=True), current_secret_values(devstack)))
    finally:
        devstack.stop()
        ARTIFACTS.mkdir(exist_ok=True)
        for log in (devstack.host_log, devstack.sim_log):
            if log.exists():
                (ARTIFACTS / f"{workdir.name}-{log.name}").write_bytes(log.read_bytes())
    assert not found, f"secret values leaked into what the stack produced: {found}"


@pytest.fixture(scope="module")
def scenario(stack: DevStack) -> dict[str, Any]:
    with stack.sim() as sim:
        response = sim.get("/scenario")
        response.raise_for_status()
        return dict(response.json())


@contextlib.asynccontextmanager
async def _runtime(stack: DevStack) -> AsyncIterator[Any]:
    from shared.runtime import Runtime
    from shared.settings import load_settings

    rt = await Runtime.build(load_settings(stack.app_env())).start()
    try:
        yield rt
    finally:
        await rt.close()


@pytest.fixture
async def runtime(stack: DevStack) -> AsyncIterator[Any]:
    async with _runtime(stack) as rt:
        yield rt


@pytest.fixture(scope="module")
async def module_runtime(stack: DevStack) -> AsyncIterator[Any]:
    async with _runtime(stack) as rt:
        yield rt


def scenario_secret_values(scenario: dict[str, Any]) -> set[str]:
    values = {s["value"] for app in scenario.get("apps", []) for s in app.get("secrets", []) if s.get("value")}
    for registration in scenario.get("registrations", []):
        values.update(v for k, v in registration.items() if k.endswith("Secret") and isinstance(v, str))
    host_secret = scenario.get("hostIdentity", {}).get("clientSecret")
    if host_secret:
        values.add(host_secret)
    return {v for v in values if len(v) >= 8}


@pytest.fixture(scope="module")
def secret_values(scenario: dict[str, Any]) -> set[str]:
    return scenario_secret_values(scenario)
