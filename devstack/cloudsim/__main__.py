"""``python -m devstack.cloudsim --port PORT --scenario NAME_OR_FILE --env-file FILE [--host 127.0.0.1]``

Writes FILE (KEY=VALUE lines) only once the server listens: callers poll for it as the
readiness signal. SIGTERM / SIGINT stop the server cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from .server import env_values, serve


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.cloudsim", description="Microsoft cloud simulator for memsync"
    )
    parser.add_argument("--port", type=int, default=int(os.environ.get("MEMSYNC_SIM_PORT", "8443")))
    parser.add_argument("--scenario", default="demo", help="built-in name (demo, edge, large) or a JSON file")
    parser.add_argument("--env-file", required=True, type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--state-dir", type=Path, default=None, help="where the CA is written (default: a temp dir)")
    parser.add_argument("--log-level", default="WARNING")
    return parser.parse_args(argv)


async def _run(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    state_dir = args.state_dir or Path(tempfile.mkdtemp(prefix="cloudsim-"))
    started = time.perf_counter()
    env_file: Path = args.env_file
    env_file.unlink(missing_ok=True)  # noqa: ASYNC240 - a stale file would signal readiness early
    async with serve(args.scenario, port=args.port, host=args.host, state_dir=state_dir) as running:
        values = env_values(running)
        tmp = env_file.with_name(env_file.name + ".tmp")
        text = "".join(f"{k}={v}\n" for k, v in values.items())
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(env_file)
        print(
            f"cloudsim ready: scenario={running.server.sim.name} url={running.origin} "
            f"env-file={env_file} ({time.perf_counter() - started:.1f}s)",
            flush=True,
        )
        await stop.wait()
    env_file.unlink(missing_ok=True)  # noqa: ASYNC240 - shutting down
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return asyncio.run(_run(args))
    except (ValueError, OSError) as exc:
        print(f"cloudsim: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
