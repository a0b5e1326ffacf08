"""Benchmark the cloud simulator on the ``large`` scenario (50,000 devices).

Runs the simulator in a subprocess on a free port, lists every managedDevices page (1000 per page)
twice with httpx, and prints the simulator's own per-page overhead (the ``Server-Timing`` header,
measured inside the handler) and the simulator process's RSS before and after.

    .venv/bin/python bench/bench_cloudsim.py
"""

from __future__ import annotations

import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _list_all(
    client: httpx.Client, graph: str, token: str, select: str | None = None
) -> tuple[int, int, list[float], float]:
    url = f"{graph}/v1.0/deviceManagement/managedDevices" + (f"?$select={select}" if select else "")
    pages = devices = 0
    server_ms: list[float] = []
    started = time.perf_counter()
    while url:
        response = client.get(url, headers={"Authorization": f"Bearer {token}"})
        response.raise_for_status()
        timing = response.headers.get("Server-Timing", "sim;dur=nan")
        server_ms.append(float(timing.split("dur=")[1]))
        body = response.json()
        pages += 1
        devices += len(body["value"])
        url = body.get("@odata.nextLink")
    return pages, devices, server_ms, time.perf_counter() - started


def main() -> int:
    state = Path(tempfile.mkdtemp(prefix="bench-cloudsim-"))
    env_file = state / "sim.env"
    port = _free_port()
    started = time.perf_counter()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devstack.cloudsim",
            "--port",
            str(port),
            "--scenario",
            "large",
            "--env-file",
            str(env_file),
            "--state-dir",
            str(state / "tls"),
        ],
        cwd=REPO,
    )
    try:
        while not env_file.exists():
            if process.poll() is not None:
                print("simulator exited", file=sys.stderr)
                return 1
            time.sleep(0.05)
        print(f"simulator ready (large generated and listening) in {time.perf_counter() - started:.2f}s")
        env = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
        client = httpx.Client(verify=env["SSL_CERT_FILE"], timeout=60)
        scenario = client.get(f"{env['MEMSYNC_SIM_URL']}/scenario").json()
        registration = scenario["registrations"][0]
        token = client.post(
            f"{env['MEMSYNC_AUTHORITY_HOST']}/{registration['tenantId']}/oauth2/v2.0/token",
            data={
                "client_id": registration["syncAppId"],
                "client_secret": registration["syncAppSecret"],
                "scope": "https://graph.microsoft.com/.default",
                "grant_type": "client_credentials",
            },
        ).json()["access_token"]
        rss_start = _rss_mb(process.pid)
        print(f"simulator RSS after start: {rss_start:.1f} MB")
        for label, select in (
            ("full objects, run 1", None),
            ("full objects, run 2", None),
            (
                "$select=id,deviceName,serialNumber,lastSyncDateTime, run 1",
                "id,deviceName,serialNumber,lastSyncDateTime",
            ),
            ("$select (cached), run 2", "id,deviceName,serialNumber,lastSyncDateTime"),
        ):
            pages, devices, server_ms, wall = _list_all(client, env["MEMSYNC_GRAPH_URL"], token, select)
            print(
                f"{label}: {pages} pages, {devices} devices, wall {wall:.2f}s; server overhead per page "
                f"mean {statistics.mean(server_ms):.2f} ms, p50 {statistics.median(server_ms):.2f} ms, max {max(server_ms):.2f} ms; "
                f"RSS {_rss_mb(process.pid):.1f} MB"
            )
        counters = (
            client.get(f"{env['MEMSYNC_SIM_URL']}/counters")
            .json()["handlerTiming"]
            .get("graph.managedDevices.list", {})
        )
        print(f"/_sim/counters handlerTiming graph.managedDevices.list: {counters}")
        print(f"RSS growth over the listings: {_rss_mb(process.pid) - rss_start:+.1f} MB")
    finally:
        process.terminate()
        process.wait(timeout=15)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
