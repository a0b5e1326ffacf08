"""Start and stop Azurite (the Azure Storage emulator) from the project's node_modules.

Azurite is pinned in package.json and installed with ``npm ci``; we never use ``npx``
because that may download a different version at run time.

Usage::

    with Azurite() as az:                       # in-memory, ports from env
        conn = az.connection_string()

    az = Azurite(persistent=True)               # data in a temp dir: survives restart()
    az.start(); az.restart(); az.stop()
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

log = logging.getLogger("devstack.azurite")

# Well-known development-storage account. Public by design: it is the key every Azure
# SDK uses for ``UseDevelopmentStorage=true``.
# https://learn.microsoft.com/azure/storage/common/storage-use-azurite#http-connection-strings
DEV_ACCOUNT_NAME = "devstoreaccount1"
DEV_ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORTS = {"blob": 10000, "queue": 10001, "table": 10002}

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class AzuritePorts:
    blob: int = DEFAULT_PORTS["blob"]
    queue: int = DEFAULT_PORTS["queue"]
    table: int = DEFAULT_PORTS["table"]

    @classmethod
    def from_env(cls, env: os._Environ[str] | dict[str, str] | None = None) -> AzuritePorts:
        e = os.environ if env is None else env
        return cls(
            blob=int(e.get("AZURITE_BLOB_PORT", DEFAULT_PORTS["blob"])),
            queue=int(e.get("AZURITE_QUEUE_PORT", DEFAULT_PORTS["queue"])),
            table=int(e.get("AZURITE_TABLE_PORT", DEFAULT_PORTS["table"])),
        )


def connection_string(ports: AzuritePorts | None = None, host: str = DEFAULT_HOST) -> str:
    """Explicit connection string for an Azurite on ``host`` with ``ports`` (default: env)."""
    p = ports or AzuritePorts.from_env()
    return (
        "DefaultEndpointsProtocol=http;"
        f"AccountName={DEV_ACCOUNT_NAME};AccountKey={DEV_ACCOUNT_KEY};"
        f"BlobEndpoint=http://{host}:{p.blob}/{DEV_ACCOUNT_NAME};"
        f"QueueEndpoint=http://{host}:{p.queue}/{DEV_ACCOUNT_NAME};"
        f"TableEndpoint=http://{host}:{p.table}/{DEV_ACCOUNT_NAME};"
    )


def find_azurite_binary(repo_root: Path = REPO_ROOT) -> Path:
    binary = repo_root / "node_modules" / ".bin" / "azurite"
    if not binary.exists():
        raise FileNotFoundError(
            f"{binary} not found: run `npm ci` in {repo_root} to install the pinned Azurite"
        )
    return binary


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class Azurite:
    """An Azurite child process. Context manager; also start()/stop()/restart()."""

    def __init__(
        self,
        ports: AzuritePorts | None = None,
        *,
        host: str = DEFAULT_HOST,
        persistent: bool = False,
        location: str | Path | None = None,
        log_file: str | Path | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        self.ports = ports or AzuritePorts.from_env()
        self.host = host
        # persistent mode keeps data on disk so that restart() (e.g. to simulate a storage
        # outage mid-test) does not lose queues and tables.
        self.persistent = persistent or location is not None
        self._own_location = self.persistent and location is None
        self.location: Path | None = Path(location) if location is not None else None
        self.log_file = Path(log_file) if log_file is not None else None
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_handle: object | None = None

    # ----------------------------------------------------------------- lifecycle
    def command(self) -> list[str]:
        cmd = [
            str(find_azurite_binary()),
            "--blobHost",
            self.host,
            "--blobPort",
            str(self.ports.blob),
            "--queueHost",
            self.host,
            "--queuePort",
            str(self.ports.queue),
            "--tableHost",
            self.host,
            "--tablePort",
            str(self.ports.table),
            "--skipApiVersionCheck",  # newer SDKs send API versions Azurite may not know yet
            "--loose",
            "--silent",
            "--disableTelemetry",
        ]
        if self.persistent:
            assert self.location is not None
            cmd += ["--location", str(self.location)]
        else:
            cmd += ["--inMemoryPersistence"]
        return cmd

    def start(self) -> Azurite:
        if self.running:
            return self
        busy = [p for p in self._port_list() if port_open(self.host, p)]
        if busy:
            raise RuntimeError(
                f"Azurite ports {busy} on {self.host} are already in use; "
                "stop the other emulator or set AZURITE_*_PORT"
            )
        if self.persistent and self.location is None:
            self.location = Path(tempfile.mkdtemp(prefix="azurite-"))
        if self.location is not None:
            self.location.mkdir(parents=True, exist_ok=True)
        stdout: int | object = subprocess.DEVNULL
        if self.log_file is not None:
            self._log_handle = open(self.log_file, "ab")  # noqa: SIM115 - lives as long as the process
            stdout = self._log_handle
        # Own process group so that stop() also reaches node's children, and Ctrl-C in
        # a terminal running the tests does not kill Azurite before fixtures tear down.
        self._proc = subprocess.Popen(
            self.command(),
            stdout=stdout,  # type: ignore[arg-type]
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=str(self.location or REPO_ROOT),
            start_new_session=True,
        )
        self._wait_ready()
        log.info("Azurite started (pid %s, ports %s)", self._proc.pid, self.ports)
        return self

    def _port_list(self) -> list[int]:
        return [self.ports.blob, self.ports.queue, self.ports.table]

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"Azurite exited early with code {self._proc.returncode}")
            if all(port_open(self.host, p) for p in self._port_list()):
                return
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"Azurite did not open ports {self._port_list()} in {self.startup_timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # already gone
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.warning("Azurite did not stop on SIGTERM in %ss; killing it", timeout)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=timeout)
        if self._log_handle is not None:
            self._log_handle.close()  # type: ignore[attr-defined]
            self._log_handle = None

    def restart(self) -> Azurite:
        """Stop and start again; with persistent=True the data survives."""
        self.stop()
        # Wait for the OS to release the ports before binding again.
        deadline = time.monotonic() + 10
        while any(port_open(self.host, p) for p in self._port_list()) and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.start()

    def cleanup(self) -> None:
        """Stop and remove the temp data dir this object created."""
        self.stop()
        if self._own_location and self.location is not None:
            shutil.rmtree(self.location, ignore_errors=True)
            self.location = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def connection_string(self) -> str:
        return connection_string(self.ports, self.host)

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()


def main(argv: list[str] | None = None) -> int:
    """``python -m devstack.azurite [--persistent DIR]``: run Azurite in the foreground."""
    parser = argparse.ArgumentParser(description="Run the pinned Azurite on loopback.")
    parser.add_argument("--location", help="persist data in this directory (default: in memory)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    az = Azurite(location=args.location)
    az.start()
    print(f"AzureWebJobsStorage={az.connection_string()}", flush=True)
    stop = False

    def _on_signal(signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    while not stop and az.running:
        time.sleep(0.2)
    az.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
