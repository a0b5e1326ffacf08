"""Helpers for the local Functions host's integration tests (process control, queues, HTTP)."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from azure.storage.queue import QueueClient

REPO_ROOT = Path(__file__).resolve().parents[3]
TESTAPP = Path(__file__).resolve().parent / "testapp"
FUNCTION_KEY = "k"
WORK_QUEUE = "work-in"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class HostProcess:
    proc: subprocess.Popen[str]
    port: int
    lines: list[str] = field(default_factory=list)
    _reader: threading.Thread | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_reader(self) -> None:
        def _read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.append(line.rstrip("\n"))

        self._reader = threading.Thread(target=_read, daemon=True)
        self._reader.start()

    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"host exited with {self.proc.returncode}:\n{self.output()}")
            time.sleep(0.05)
        raise TimeoutError(f"host did not print {text!r} in {timeout}s:\n{self.output()}")

    def stop(self, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self._reader is not None:
            self._reader.join(timeout=5)
        return int(self.proc.returncode)


def start_host(
    conn: str,
    extra_env: dict[str, str] | None = None,
    key: str | None = FUNCTION_KEY,
    unset: tuple[str, ...] = (),
) -> HostProcess:
    port = free_port()
    env = dict(os.environ)
    env.update(
        {
            "AzureWebJobsStorage": conn,
            "TEST_TIMER_SCHEDULE": "*/2 * * * * *",
            "TEST_WORK_QUEUE": WORK_QUEUE,
            "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT": "4096",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra_env or {})
    for name in unset:
        env.pop(name, None)
    cmd = [sys.executable, "-m", "devstack.functions_host", "--port", str(port), "--app-dir", str(TESTAPP)]
    if key:
        cmd += [f"--function-key={key}"]  # `=`: a key may start with "-"
    proc = subprocess.Popen(
        cmd,
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    host = HostProcess(proc, port)
    host.start_reader()
    try:
        host.wait_for_line("Host started", timeout=30)
    except BaseException:
        host.stop()
        raise
    return host


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def unb64(text: str) -> str:
    return base64.b64decode(text).decode()


def wait_for_messages(client: QueueClient, count: int, timeout: float) -> list[str]:
    """Receive (and delete) until `count` messages were seen; returns their raw text."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(seen) < count:
        for m in client.receive_messages(max_messages=32, visibility_timeout=30):
            seen.append(m.content)
            client.delete_message(m)
        if len(seen) < count:
            time.sleep(0.2)
    return seen


def http(
    method: str, url: str, *, headers: dict[str, str] | None = None, body: bytes | None = None
) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read(), dict(err.headers)
