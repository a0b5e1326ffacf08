"""The whole local stack on one machine: Azurite, the Microsoft cloud simulator, the Functions host.

Used by `make demo`, `make up` and the integration tests. Each part is a child process started through
its public command line (the README's commands), so the tests exercise exactly what a user runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from devstack.azurite import Azurite, AzuritePorts, connection_string

log = logging.getLogger("devstack.stack")
REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


@dataclass
class StackPorts:
    host: int = 7071
    simulator: int = 8443
    azurite: AzuritePorts = field(default_factory=AzuritePorts)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StackPorts:
        e = os.environ if env is None else env
        return cls(
            host=int(e.get("MEMSYNC_HOST_PORT", "7071")),
            simulator=int(e.get("MEMSYNC_SIM_PORT", "8443")),
            azurite=AzuritePorts.from_env(dict(e)),
        )

    @classmethod
    def free(cls) -> StackPorts:
        """Ports nobody uses, so a test stack never collides with a running `make up`."""
        return cls(free_port(), free_port(), AzuritePorts(free_port(), free_port(), free_port()))


class DevStack:
    """Azurite + cloud simulator + local Functions host, started and stopped together."""

    def __init__(
        self,
        *,
        scenario: str = "demo",
        ports: StackPorts | None = None,
        function_key: str | None = None,
        workdir: Path | None = None,
        extra_env: Mapping[str, str] | None = None,
        persistent_storage: bool = False,
        tls_dir: Path | None = None,
    ) -> None:
        self.scenario = scenario
        self.ports = ports or StackPorts.from_env()
        self.function_key = function_key or secrets.token_urlsafe(24)
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="memsync-stack-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.extra_env = dict(extra_env or {})
        # A CA made beforehand (tests make one before importing aiohttp); else the simulator makes one.
        self.tls_dir = tls_dir or self.workdir / "tls"
        self.azurite = Azurite(
            self.ports.azurite, persistent=persistent_storage, log_file=self.workdir / "azurite.log"
        )
        self.sim_env: dict[str, str] = {}
        self._sim: subprocess.Popen[bytes] | None = None
        self._host: subprocess.Popen[bytes] | None = None
        self.host_log = self.workdir / "host.log"
        self.sim_log = self.workdir / "cloudsim.log"

    # ------------------------------------------------------------------ addresses
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.host}/api"

    @property
    def sim_url(self) -> str:
        return self.sim_env["MEMSYNC_SIM_URL"]

    @property
    def ca_file(self) -> str:
        return self.sim_env["SSL_CERT_FILE"]

    @property
    def storage_connection_string(self) -> str:
        return connection_string(self.ports.azurite)

    def app_env(self) -> dict[str, str]:
        """The app settings memsync runs with (what local.settings.json would hold), plus TLS trust."""
        env = {
            "AzureWebJobsStorage": self.storage_connection_string,
            "FUNCTIONS_WORKER_RUNTIME": "python",
            "MEMSYNC_SYNC_SCHEDULE": "0 0 */6 * * *",
            "MEMSYNC_EXPIRY_SCHEDULE": "0 0 7 * * *",
            **self.sim_env,
            **self.extra_env,
        }
        env.pop("MEMSYNC_SIM_URL", None)
        return env

    def process_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.app_env())
        env["PYTHONUNBUFFERED"] = "1"
        return env

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> DevStack:
        try:
            self.azurite.start()
            self._start_simulator()
            self.start_host()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_simulator(self) -> None:
        env_file = self.workdir / "cloudsim.env"
        env_file.unlink(missing_ok=True)
        with open(self.sim_log, "ab") as out:
            self._sim = subprocess.Popen(
                [sys.executable, "-m", "devstack.cloudsim", "--port", str(self.ports.simulator),
                 "--scenario", self.scenario, "--env-file", str(env_file), "--state-dir", str(self.tls_dir)],
                cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while not env_file.exists() or "MEMSYNC_SIM_URL" not in env_file.read_text():
            if self._sim.poll() is not None:
                raise RuntimeError(f"the cloud simulator exited early; see {self.sim_log}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the cloud simulator did not start in 60 s; see {self.sim_log}")
            time.sleep(0.1)
        self.sim_env = read_env_file(env_file)

    def start_host(self) -> None:
        with open(self.host_log, "ab") as out:
            self._host = subprocess.Popen(
                # `=` form: a random key may start with "-", which argparse would take for an option.
                [sys.executable, "-m", "devstack.functions_host", "--port", str(self.ports.host),
                 f"--function-key={self.function_key}"],
                cwd=REPO_ROOT, env=self.process_env(), stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        self._wait_http(f"http://127.0.0.1:{self.ports.host}/admin/host/status", self._host, "host")

    def _wait_http(self, url: str, proc: subprocess.Popen[bytes], name: str, timeout: float = 60) -> None:
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the {name} exited early with {proc.returncode}; see {self.host_log}")
            with contextlib.suppress(urllib.error.URLError, OSError):
                with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310  # loopback only
                    if response.status == 200:
                        return
            time.sleep(0.1)
        raise TimeoutError(f"the {name} did not answer {url} in {timeout:.0f} s; see {self.host_log}")

    def stop_host(self, *, kill: bool = False, timeout: float = 20) -> int | None:
        proc, self._host = self._host, None
        return _stop(proc, signal.SIGKILL if kill else signal.SIGTERM, timeout)

    def restart_host(self, *, kill: bool = False) -> None:
        self.stop_host(kill=kill)
        self.start_host()

    def stop(self) -> None:
        self.stop_host()
        sim, self._sim = self._sim, None
        _stop(sim, signal.SIGTERM, 10)
        self.azurite.stop()

    def __enter__(self) -> DevStack:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # ------------------------------------------------------------------ clients
    def api(self, **kwargs: Any) -> Any:
        """An httpx client for memsync's HTTP API, carrying the function key."""
        import httpx

        return httpx.Client(base_url=self.base_url, headers={"x-functions-key": self.function_key},
                            timeout=30, **kwargs)

    def sim(self, **kwargs: Any) -> Any:
        """An httpx client for the simulator's control API (trusting its CA)."""
        import httpx

        return httpx.Client(base_url=self.sim_url, verify=self.ca_file, timeout=30, **kwargs)

    def run_function(self, function_name: str, timeout: float = 60) -> bool:
        """Run a non-HTTP function now through the host's admin API, as the portal's Test/Run does:
        https://learn.microsoft.com/azure/azure-functions/functions-manually-run-non-http"""
        import httpx

        response = httpx.post(
            f"http://127.0.0.1:{self.ports.host}/admin/functions/{function_name}",
            headers={"x-functions-key": self.function_key}, json={"input": ""}, timeout=timeout,
        )
        return response.status_code in (200, 202, 204)

    def logs(self) -> Iterator[str]:
        for path in (self.host_log, self.sim_log):
            if path.exists():
                yield path.read_text(errors="replace")


def _stop(proc: subprocess.Popen[bytes] | None, sig: int, timeout: float) -> int | None:
    if proc is None or proc.poll() is not None:
        return None if proc is None else proc.returncode
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait(timeout=timeout)

