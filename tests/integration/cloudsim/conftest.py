"""Starts ``python -m devstack.cloudsim`` once per session (scenario ``edge``) on a free port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Sim:
    def __init__(self, env: dict[str, str], process: subprocess.Popen[bytes]) -> None:
        self.env = env
        self.process = process
        self.ca = env["SSL_CERT_FILE"]
        self.url = env["MEMSYNC_SIM_URL"]
        self.authority = env["MEMSYNC_AUTHORITY_HOST"]
        self.graph = env["MEMSYNC_GRAPH_URL"]
        self.defender = env["MEMSYNC_DEFENDER_URL"]
        self.partner_center = env["MEMSYNC_PARTNER_CENTER_URL"]
        self.vault = env["MEMSYNC_KEY_VAULT_URL"]
        self.http = httpx.Client(verify=self.ca, timeout=30)

    def scenario(self) -> dict[str, Any]:
        return self.http.get(f"{self.url}/scenario").json()  # type: ignore[no-any-return]

    def tenant(self, key: str) -> dict[str, Any]:
        return next(t for t in self.scenario()["tenants"] if t["key"] == key)

    def app(self, key: str) -> dict[str, Any]:
        return next(a for a in self.scenario()["apps"] if a["key"] == key)

    def token(self, tenant_id: str, app_key: str, resource: str, secret: str | None = None) -> str:
        app = self.app(app_key)
        response = self.http.post(
            f"{self.authority}/{tenant_id}/oauth2/v2.0/token",
            data={
                "client_id": app["appId"],
                "client_secret": secret or app["secrets"][-1]["value"],
                "scope": f"{resource}/.default",
                "grant_type": "client_credentials",
            },
        )
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])


@pytest.fixture(scope="session")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    state = tmp_path_factory.mktemp("cloudsim")
    env_file = state / "sim.env"
    # Share the session CA that tests/conftest.py made, so other clients in this process trust us too.
    shared = os.environ.get("MEMSYNC_TEST_STATE_DIR")
    tls_dir = Path(shared) / "tls" if shared else state / "tls"
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devstack.cloudsim",
            "--port",
            str(port),
            "--scenario",
            "edge",
            "--env-file",
            str(env_file),
            "--state-dir",
            str(tls_dir),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while not env_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"cloudsim did not start: {process.stderr.read().decode() if process.stderr else ''}")
        time.sleep(0.05)
    env = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
    # Sync Azure clients (requests) read REQUESTS_CA_BUNDLE per request; httpx reads SSL_CERT_FILE
    # when a client is built. Async azure clients (aiohttp) would need it before import.
    os.environ.setdefault("SSL_CERT_FILE", env["SSL_CERT_FILE"])
    os.environ.setdefault("REQUESTS_CA_BUNDLE", env["REQUESTS_CA_BUNDLE"])
    running = Sim(env, process)
    try:
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def fresh(sim: Sim) -> Sim:
    """The session simulator, reset to the scenario's initial state."""
    assert sim.http.post(f"{sim.url}/reset").status_code == 200
    return sim
