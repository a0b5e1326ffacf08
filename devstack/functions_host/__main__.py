"""``python -m devstack.functions_host --port 7071 [--function-key KEY] [--app-dir DIR]``

Local twin of ``func start``: settings come from the environment (plus
DIR/local.settings.json, environment winning, as Core Tools does), host.json from DIR.
Exit codes: 0 after a clean SIGINT/SIGTERM shutdown, 1 on a start-up error.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

from .app_loader import AppLoadError
from .appsettings import MissingSettingError, apply_local_settings
from .host import FunctionsHost
from .hostconfig import HostConfigError
from .invoke import InvocationContextFilter
from .ncrontab import ScheduleError

log = logging.getLogger("devstack.functions_host")


class _Formatter(logging.Formatter):
    """``[2024-01-01T00:00:00.000Z] message`` like Core Tools; function logs get the
    function name and invocation id appended so concurrent invocations can be told apart."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        msg = record.getMessage()
        inv = getattr(record, "invocation_id", None)
        if inv and record.name != log.name:
            msg = f"{msg} [Functions.{getattr(record, 'function_name', '?')}, Id={inv}]"
        out = f"[{ts}] {msg}"
        if record.exc_info:
            out += "\n" + self.formatException(record.exc_info)
        return out


def configure_logging(level: str) -> None:
    # Core Tools writes everything to stdout; line buffering so a parent process sees it live.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_Formatter())
    handler.addFilter(InvocationContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The SDK logs every HTTP request at INFO; the real host keeps those out of the console.
    logging.getLogger("azure").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


async def _serve(host: FunctionsHost) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals_seen = 0

    def _on_signal(signum: int) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen == 1:
            log.info("Received %s; shutting down gracefully", signal.Signals(signum).name)
            stop.set()
        else:
            # Second signal: the user does not want to wait for in-flight work.
            log.warning("Second %s: exiting now", signal.Signals(signum).name)
            os._exit(130)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _on_signal, sig)
    try:
        await host.start()
    except (MissingSettingError, ScheduleError, HostConfigError, AppLoadError, OSError) as exc:
        log.error("Host start-up failed: %s", exc)
        await host.stop()
        return 1
    await stop.wait()
    await host.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.functions_host",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument(
        "--function-key",
        default=os.environ.get("DEVSTACK_FUNCTION_KEY"),
        help="enforce this key for non-anonymous functions (default: keys not enforced)",
    )
    parser.add_argument("--app-dir", type=Path, default=Path.cwd())
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=10.0,
        help="seconds to let in-flight invocations finish on shutdown",
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    configure_logging(args.log_level.upper())
    app_dir: Path = args.app_dir.resolve()
    try:
        apply_local_settings(app_dir)
    except ValueError as exc:
        log.error("local.settings.json is invalid: %s", exc)
        return 1
    # Core Tools sets WEBSITE_HOSTNAME to the address it serves, as the platform sets the app's host name.
    served = "localhost" if args.host in ("0.0.0.0", "::") else args.host
    os.environ.setdefault("WEBSITE_HOSTNAME", f"{served}:{args.port}")
    host = FunctionsHost(
        app_dir,
        host=args.host,
        port=args.port,
        function_key=args.function_key or None,
        drain_timeout=args.drain_timeout,
    )
    return asyncio.run(_serve(host))


if __name__ == "__main__":
    sys.exit(main())
