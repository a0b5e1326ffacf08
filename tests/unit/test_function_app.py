import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def _index() -> dict[str, list[dict]]:
    import function_app

    return {f.get_function_name(): [json.loads(b) for b in f.get_raw_bindings()]
            for f in function_app.app.get_functions()}


def test_indexes_without_a_host_and_declares_the_expected_triggers():
    functions = _index()
    triggers = {name: next(b for b in bindings if b["direction"] == "IN" and b["type"].endswith("Trigger"))
                for name, bindings in functions.items()}
    assert triggers["health"]["type"] == "httpTrigger"
    assert triggers["health"]["authLevel"] == "ANONYMOUS"
    queue = [t for t in triggers.values() if t["type"] == "queueTrigger"]
    assert [q["queueName"] for q in queue] == ["memsync-sync"]
    assert all(q["connection"] == "AzureWebJobsStorage" for q in queue)
    schedules = sorted(t["schedule"] for t in triggers.values() if t["type"] == "timerTrigger")
    assert schedules == ["%MEMSYNC_EXPIRY_SCHEDULE%", "%MEMSYNC_SYNC_SCHEDULE%"]
    routes = {t.get("route") for t in triggers.values() if t["type"] == "httpTrigger"}
    assert {"health", "openapi.json", "integrations", "alerts"} <= routes
    # Only health and the OpenAPI document are open without a key.
    anonymous = {t["route"] for t in triggers.values() if t.get("authLevel") == "ANONYMOUS"}
    assert anonymous <= {"health", "openapi.json", "console", "console/{*asset}"}


def test_imports_in_under_a_second_without_heavy_sdks():
    code = (
        "import sys, time; t = time.perf_counter(); import function_app; "
        "print(time.perf_counter() - t); "
        "print(','.join(m for m in ('msgraph', 'azure.data.tables', 'azure.keyvault.secrets', "
        "'azure.identity', 'aiohttp') if m in sys.modules))"
    )
    # Best of three: the first run may pay for a cold disk cache.
    runs = [subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
            for _ in range(3)]
    best = min(float(r.stdout.split()[0]) for r in runs)
    heavy = runs[0].stdout.split("\n")[1]
    assert heavy == "", f"imported at start-up: {heavy}"
    assert best < 1.0, f"import function_app took {best:.2f} s"
