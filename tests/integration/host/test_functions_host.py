"""End-to-end behaviour of `python -m devstack.functions_host` against Azurite."""

from __future__ import annotations

import json
import time

import pytest

from .support import WORK_QUEUE, HostProcess, b64, http, start_host, unb64, wait_for_messages

pytestmark = pytest.mark.integration


# ----------------------------------------------------------------------------- HTTP
def test_status_endpoint_is_anonymous(host_proc: HostProcess) -> None:
    status, body, _ = http("GET", f"{host_proc.base}/admin/host/status")
    assert status == 200
    assert json.loads(body)["state"] == "Running"


def test_banner_lists_http_routes(host_proc: HostProcess) -> None:
    out = host_proc.output()
    assert f"ping: [GET] http://localhost:{host_proc.port}/api/ping" in out
    assert f"get_item: [GET,POST] http://localhost:{host_proc.port}/api/items/{{id:int}}" in out


def test_anonymous_function_is_open(host_proc: HostProcess) -> None:
    status, body, _ = http("GET", f"{host_proc.base}/api/ping")
    assert (status, body) == (200, b"pong")


def test_function_key_required(host_proc: HostProcess) -> None:
    url = f"{host_proc.base}/api/items/7"
    assert http("GET", url)[:2] == (401, b"")
    assert http("GET", url, headers={"x-functions-key": "wrong"})[:2] == (401, b"")
    assert http("GET", url + "?code=wrong")[0] == 401
    assert http("GET", url, headers={"x-functions-key": "k"})[0] == 200
    assert http("GET", url + "?code=k")[0] == 200


def test_route_params_query_and_body(host_proc: HostProcess) -> None:
    status, body, headers = http(
        "POST",
        f"{host_proc.base}/api/ITEMS/42?q=hello&code=k",
        body=b"not json {",
        headers={"Content-Type": "text/plain"},
    )
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    data = json.loads(body)
    assert (data["id"], data["method"], data["q"]) == (42, "POST", "hello")
    assert data["body"] == "not json {"  # the host passes bytes through untouched
    # The function's own log line carries its invocation id.
    host_proc.wait_for_line(f"get_item called for 42 [Functions.get_item, Id={data['invocation_id']}]", 5)


def test_literal_route_beats_parameter(host_proc: HostProcess) -> None:
    status, body, _ = http("GET", f"{host_proc.base}/api/items/special?code=k")
    assert (status, body) == (200, b"special")


def test_unknown_route_wrong_method_and_constraint_are_404(host_proc: HostProcess) -> None:
    key = {"x-functions-key": "k"}
    assert http("GET", f"{host_proc.base}/api/nope", headers=key)[0] == 404
    assert http("GET", f"{host_proc.base}/nope", headers=key)[0] == 404
    assert http("DELETE", f"{host_proc.base}/api/items/1", headers=key)[0] == 404  # as the real host
    assert http("GET", f"{host_proc.base}/api/items/abc", headers=key)[0] == 404  # {id:int}


def test_exception_is_500_without_details(host_proc: HostProcess) -> None:
    status, body, _ = http("GET", f"{host_proc.base}/api/boom")
    assert (status, body) == (500, b"")
    host_proc.wait_for_line("Executed 'Functions.boom' (Failed", 5)
    assert "secret stack detail" in host_proc.output()  # logged server-side only


def test_body_over_limit_is_413(host_proc: HostProcess) -> None:
    status, _, _ = http("POST", f"{host_proc.base}/api/items/1?code=k", body=b"x" * 5000)
    assert status == 413
    assert http("POST", f"{host_proc.base}/api/items/1?code=k", body=b"x" * 100)[0] == 200


# ---------------------------------------------------------------------------- timer
def test_timer_with_setting_schedule_fires(host_proc: HostProcess, queue) -> None:
    fired = wait_for_messages(queue("timer-fired"), 1, timeout=8)
    assert fired, host_proc.output()
    assert json.loads(unb64(fired[0])) in ({"past_due": False}, {"past_due": True})
    assert "Executing 'Functions.tick' (Reason='Timer fired at" in host_proc.output()


# ---------------------------------------------------------------------------- queue
def test_queue_message_processed_and_output_written(host_proc: HostProcess, queue) -> None:
    queue(WORK_QUEUE).send_message(b64("hello"))
    done = wait_for_messages(queue("work-done"), 1, timeout=10)
    assert done == [b64("done:hello")]  # written base64-encoded, as the host does
    host_proc.wait_for_line("New queue message detected on 'work-in'.", 2)


def test_failing_message_retried_then_poisoned(host_proc: HostProcess, queue) -> None:
    original = b64('{"bad": 1}')
    queue("always-fails").send_message(original)
    poisoned = wait_for_messages(queue("always-fails-poison"), 1, timeout=15)
    assert poisoned == [original], host_proc.output()  # body intact
    attempts = [line for line in host_proc.lines if "always_fails attempt" in line]
    assert [a.split("attempt ")[1].split(" ")[0] for a in attempts] == ["1", "2", "3"]  # maxDequeueCount 3
    assert queue("always-fails").peek_messages(max_messages=1) == []


def test_non_base64_message_does_not_crash_host(host_proc: HostProcess, queue) -> None:
    queue(WORK_QUEUE).send_message("this is not base64 !!")
    queue(WORK_QUEUE).send_message(b64("after-bad"))
    done = wait_for_messages(queue("work-done"), 1, timeout=10)
    assert done == [b64("done:after-bad")]
    # Undecodable messages go to the poison queue without an invocation (extension 5.x),
    # encoded so that a poison-queue trigger decodes the original text.
    poisoned = wait_for_messages(queue(f"{WORK_QUEUE}-poison"), 1, timeout=5)
    assert [unb64(p) for p in poisoned] == ["this is not base64 !!"]
    assert "cannot be decoded with messageEncoding 'base64'" in host_proc.output()
    assert http("GET", f"{host_proc.base}/api/ping")[0] == 200


# ------------------------------------------------------------------------- lifecycle
def test_admin_run_non_http_function(host_proc: HostProcess, queue) -> None:
    status, _, _ = http(
        "POST",
        f"{host_proc.base}/admin/functions/work",
        body=b'{"input": "manual"}',
        headers={"Content-Type": "application/json", "x-functions-key": "k"},
    )
    assert status == 202
    assert http("POST", f"{host_proc.base}/admin/functions/work", body=b"{}")[0] == 401
    done = wait_for_messages(queue("work-done"), 1, timeout=10)
    assert done == [b64("done:manual")]


def test_missing_setting_is_a_clear_startup_error(azurite) -> None:
    with pytest.raises(RuntimeError) as info:
        start_host(azurite.connection_string(), unset=("TEST_TIMER_SCHEDULE",))
    assert "app setting 'TEST_TIMER_SCHEDULE' is not defined" in str(info.value)


def test_sigterm_exits_cleanly(azurite) -> None:
    host = start_host(azurite.connection_string(), {"TEST_TIMER_SCHEDULE": "0 0 0 1 1 *"})
    started = time.monotonic()
    rc = host.stop()
    assert rc == 0, host.output()
    assert time.monotonic() - started < 10
    assert "Job host stopped" in host.output()
