"""Debian's Chromium for the console's browser tests: `python -m tests.integration.console.chromium`.

Playwright drives the distribution's browser (`executable_path`), never one of its own downloads
(`playwright install` needs a network this project does not have). The package is installed here when
missing, as the Makefile's test set-up and the browser fixture both ask.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


class ChromiumMissing(RuntimeError):
    pass


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def ensure_chromium() -> str:
    """The path of Debian's chromium, installing the package with apt-get first if it is missing."""
    found = chromium_path()
    if found:
        return found
    if os.geteuid() != 0:
        raise ChromiumMissing("chromium is not installed and this is not root: run "
                              "`apt-get update && apt-get install -y --no-install-recommends chromium`")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, timeout=900)
        if done.returncode != 0:
            raise ChromiumMissing(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr[-2000:]}")
    found = chromium_path()
    if not found:
        raise ChromiumMissing("apt-get installed chromium but no chromium is on PATH")
    return found


def main() -> int:
    try:
        path = ensure_chromium()
    except ChromiumMissing as exc:
        print(f"chromium: {exc}", file=sys.stderr)
        return 1
    print(f"chromium: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
