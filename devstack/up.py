"""`make up`: the local stack in the foreground until Ctrl-C, with what you need to call it."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading

from devstack.stack import DevStack


def main() -> int:
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    with DevStack(scenario="demo") as stack:
        key = stack.function_key
        print(f"""
memsync is running (Azurite, the cloud simulator with scenario 'demo', and the Functions host).

  Base URL      {stack.base_url}
  Function key  {key}
  Console       {stack.base_url}/console?code={key}
  Simulator     {stack.sim_url}   (control API; the demo MSP's registration is at /_sim/scenario)
  Logs          {stack.host_log}

Try:
  curl -s -H "x-functions-key: {key}" {stack.base_url}/integrations
  curl -s {stack.base_url}/health

Ctrl-C stops everything.
""", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stopping.wait()
        print("Stopping...", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
