"""Test-session set-up that must happen before any client library is imported.

aiohttp (the transport of azure-core's async clients) builds its TLS context when it is imported
(FACTS.md), so the simulator's CA must exist and SSL_CERT_FILE must name it before that import. The
session makes one CA here; every simulator the tests start serves a certificate from it
(`--state-dir`), and every client in this process and in the child processes trusts it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_state = Path(os.environ.get("MEMSYNC_TEST_STATE_DIR") or tempfile.mkdtemp(prefix="memsync-tests-"))
os.environ["MEMSYNC_TEST_STATE_DIR"] = str(_state)
_tls_dir = _state / "tls"
if not (_tls_dir / "ca.pem").exists():
    from devstack.cloudsim.tls import generate_tls

    generate_tls(_tls_dir)
os.environ["SSL_CERT_FILE"] = str(_tls_dir / "ca.pem")
os.environ["REQUESTS_CA_BUNDLE"] = str(_tls_dir / "ca.pem")

TLS_STATE_DIR = _tls_dir
