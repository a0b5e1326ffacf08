"""Queue message validation, and the queue function completing malformed messages without a sync."""

from __future__ import annotations

import json

import azure.functions as func
import pytest

from shared.services.tenant_sync import InvalidSyncJob, parse_job

pytestmark = pytest.mark.unit
GOOD = {"integrationId": "4f1c2a9e-0000-4000-8000-000000000001",
        "tenantId": "0d6a0b41-58e3-4a7b-9b89-9b2c2b0b1a11", "runId": "run-1", "trigger": "schedule"}


def test_valid_job_parses_from_bytes_and_text():
    job = parse_job(json.dumps(GOOD).encode())
    assert (job.integration_id, job.tenant_id, job.run_id, job.trigger) == tuple(GOOD.values())
    assert parse_job(json.dumps(GOOD)) == job
    assert json.loads(job.to_message()) == GOOD


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not an object"),
        (b'"text"', "not an object"),
        (json.dumps({**GOOD, "trigger": "whenever"}).encode(), "trigger"),
        (json.dumps({**GOOD, "tenantId": "contoso.com"}).encode(), "tenantId"),
        (json.dumps({**GOOD, "integrationId": "../other"}).encode(), "integrationId"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "runId"}).encode(), "runId"),
        (json.dumps({**GOOD, "secret": "x"}).encode(), "secret"),
    ],
)
def test_malformed_messages_are_refused_with_a_reason(body, reason):
    with pytest.raises(InvalidSyncJob) as caught:
        parse_job(body)
    assert reason in str(caught.value)


@pytest.fixture(scope="module")
def sync_functions():
    # A fresh app with only the sync blueprint: get_functions() validates names once per app.
    from functions.sync import bp

    app = func.FunctionApp()
    app.register_functions(bp)
    return {f.get_function_name(): f for f in app.get_functions()}


def test_bindings_match_the_contract(sync_functions):
    timer = json.loads(sync_functions["sync_schedule"].get_function_json())["bindings"][0]
    assert timer["type"] == "timerTrigger" and timer["schedule"] == "%MEMSYNC_SYNC_SCHEDULE%"
    assert timer.get("runOnStartup") in (False, None)
    queue = json.loads(sync_functions["sync_tenant"].get_function_json())["bindings"][0]
    assert queue["type"] == "queueTrigger"
    assert queue["queueName"] == "memsync-sync" and queue["connection"] == "AzureWebJobsStorage"


async def test_queue_function_completes_a_malformed_message_without_touching_the_runtime(
    sync_functions, caplog
):
    user_function = sync_functions["sync_tenant"].get_user_function()
    message = func.QueueMessage(id="m1", body=b"{not json")
    with caplog.at_level("WARNING"):
        assert await user_function(message) is None  # completed, not raised: no retry storm
    assert "not JSON" in caplog.text
