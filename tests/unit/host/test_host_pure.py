"""Unit tests for the pure parts of devstack.functions_host."""

from __future__ import annotations

import asyncio
import base64
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from multidict import CIMultiDict

from devstack.azurite import DEV_ACCOUNT_KEY, AzuritePorts, connection_string
from devstack.functions_host.app_loader import FunctionSpec, HttpTriggerSpec, QueueOutputSpec
from devstack.functions_host.appsettings import (
    MissingSettingError,
    apply_local_settings,
    expand_development_storage,
    resolve_setting_expr,
    storage_connection_string,
)
from devstack.functions_host.hostconfig import HostConfigError, parse_host_json, parse_timespan
from devstack.functions_host.http_server import is_authorized
from devstack.functions_host.invoke import InvocationContextFilter, Invoker, Out, queue_output_messages
from devstack.functions_host.ncrontab import Schedule, ScheduleError, parse_schedule
from devstack.functions_host.queues import MessageDecodeError, decode_message, encode_message
from devstack.functions_host.routing import Router, RouteTemplate, RouteTemplateError, strip_prefix

pytestmark = pytest.mark.unit


# --------------------------------------------------------------------------- routing
@pytest.fixture
def router() -> Router[str]:
    r: Router[str] = Router()
    r.add("integrations/{*rest}", None, "catch-all")
    r.add("integrations/{id}/sync", ["POST"], "sync")
    r.add("items/{id:int}", ["GET"], "int")
    r.add("items/{name}", ["GET"], "name")
    r.add("items/special", ["GET"], "literal")
    r.add("tenants/{tid:guid}", None, "guid")
    r.add("opt/{x?}", None, "optional")
    r.add("files/{name}.{ext}", None, "complex")
    r.add("r/{code:regex(^[[a-z]]{{3}}$)}", None, "regex")
    return r


@pytest.mark.parametrize(
    ("method", "path", "target", "values"),
    [
        ("POST", "integrations/abc/sync", "sync", {"id": "abc"}),
        ("GET", "integrations/abc/sync", "catch-all", {"rest": "abc/sync"}),  # method mismatch
        ("GET", "Integrations/a/b", "catch-all", {"rest": "a/b"}),  # literal case-insensitive
        ("GET", "integrations", "catch-all", {}),
        ("GET", "items/5", "int", {"id": "5"}),
        ("GET", "items/special", "literal", {}),
        ("GET", "ITEMS/Special/", "literal", {}),
        ("GET", "items/x%20y", "name", {"name": "x y"}),
        (
            "GET",
            "tenants/3f2504e0-4f89-11d3-9a0c-0305e82c3301",
            "guid",
            {"tid": "3f2504e0-4f89-11d3-9a0c-0305e82c3301"},
        ),
        ("GET", "opt", "optional", {}),
        ("GET", "opt/1", "optional", {"x": "1"}),
        ("GET", "files/report.final.pdf", "complex", {"name": "report.final", "ext": "pdf"}),
        ("GET", "r/abc", "regex", {"code": "abc"}),
    ],
)
def test_route_matching(
    router: Router[str], method: str, path: str, target: str, values: dict[str, str]
) -> None:
    m = router.match(method, path)
    assert m is not None
    assert (m.route.target, m.values) == (target, values)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "nothing"),
        ("DELETE", "items/5"),  # wrong method -> no match -> 404, as the host
        ("GET", "tenants/not-a-guid"),
        ("GET", "items/5/extra"),
        ("GET", "r/abcd"),
        ("GET", "opt/1/2"),
    ],
)
def test_route_no_match(router: Router[str], method: str, path: str) -> None:
    assert router.match(method, path) is None


def test_int_constraint_range() -> None:
    t = RouteTemplate.parse("n/{n:int}")
    assert t.match("n/2147483647") == {"n": "2147483647"}
    assert t.match("n/2147483648") is None
    assert RouteTemplate.parse("n/{n:long:min(10)}").match("n/9") is None


def test_default_value() -> None:
    assert RouteTemplate.parse("p/{page=1}").match("p") == {"page": "1"}


@pytest.mark.parametrize("bad", ["a/{*rest}/b", "{a}{b}", "{1x}", "a/{x:nope}", "a/{x", "{a}/{A}"])
def test_bad_templates(bad: str) -> None:
    with pytest.raises(RouteTemplateError):
        RouteTemplate.parse(bad)


def test_strip_prefix() -> None:
    assert strip_prefix("/api/x/y", "api") == "x/y"
    assert strip_prefix("/API/x", "api") == "x"
    assert strip_prefix("/apix/y", "api") is None
    assert strip_prefix("/x", "") == "x"


# ------------------------------------------------------------------------ NCRONTAB
T0 = datetime(2024, 1, 1, 0, 0, 1, tzinfo=UTC)  # a Monday


def test_six_field_schedule_has_seconds() -> None:
    s = Schedule("*/2 * * * * *")
    assert s.occurrences(T0, 2) == [T0 + timedelta(seconds=1), T0 + timedelta(seconds=3)]


def test_five_field_schedule_is_minutes() -> None:
    assert Schedule("*/5 * * * *").next_after(T0) == datetime(2024, 1, 1, 0, 5, tzinfo=UTC)


def test_day_of_month_and_week_are_anded() -> None:
    # NCrontab: "on the 13th AND a Friday" (cron would OR them).
    nxt = Schedule("0 0 0 13 * 5").next_after(T0)
    assert (nxt.day, nxt.weekday()) == (13, 4)


def test_timespan_schedule() -> None:
    assert Schedule("00:00:30").next_after(T0) == T0 + timedelta(seconds=30)


def test_setting_in_schedule() -> None:
    s = parse_schedule("%MY_SCHEDULE%", {"MY_SCHEDULE": "0 */5 * * * *"})
    assert s.next_after(T0) == datetime(2024, 1, 1, 0, 5, tzinfo=UTC)


def test_missing_setting_names_it() -> None:
    with pytest.raises(MissingSettingError, match="MY_SCHEDULE"):
        parse_schedule("%MY_SCHEDULE%", {})


@pytest.mark.parametrize("bad", ["* * *", "61 * * * * *", "0 0 0 L * *", "nonsense"])
def test_invalid_schedules(bad: str) -> None:
    with pytest.raises(ScheduleError):
        Schedule(bad)


def test_website_time_zone() -> None:
    s = parse_schedule("0 0 9 * * *", {"WEBSITE_TIME_ZONE": "Europe/Amsterdam"})
    assert s.next_after(T0) == datetime(2024, 1, 1, 8, 0, tzinfo=UTC)


# ------------------------------------------------------------------------ host.json
def test_host_json_defaults() -> None:
    cfg = parse_host_json({"version": "2.0"}, env={}, cpu_count=2)
    assert cfg.route_prefix == "api"
    assert cfg.function_timeout == timedelta(minutes=5)
    q = cfg.queues
    assert (q.batch_size, q.new_batch_threshold, q.max_dequeue_count) == (16, 16, 5)
    assert q.visibility_timeout == timedelta(0)
    assert q.max_polling_interval == timedelta(minutes=1)
    assert q.message_encoding == "base64"
    assert cfg.request_body_limit == 100 * 1024 * 1024


def test_host_json_values() -> None:
    data = {
        "version": "2.0",
        "functionTimeout": "00:10:00",
        "extensions": {
            "http": {"routePrefix": ""},
            "queues": {
                "batchSize": 8,
                "newBatchThreshold": 4,
                "maxDequeueCount": 3,
                "visibilityTimeout": "00:00:15",
                "maxPollingInterval": 2000,
                "messageEncoding": "none",
            },
        },
    }
    cfg = parse_host_json(data, env={"FUNCTIONS_REQUEST_BODY_SIZE_LIMIT": "1024"})
    assert cfg.route_prefix == ""
    assert cfg.function_timeout == timedelta(minutes=10)
    assert cfg.queues.batch_size == 8
    assert cfg.queues.new_batch_threshold == 4
    assert cfg.queues.visibility_timeout == timedelta(seconds=15)
    assert cfg.queues.max_polling_interval == timedelta(seconds=2)  # number = ms (v1 style)
    assert cfg.queues.message_encoding == "none"
    assert cfg.request_body_limit == 1024


def test_host_json_unbounded_timeout_and_errors() -> None:
    assert parse_host_json({"functionTimeout": "-1"}, env={}).function_timeout is None
    with pytest.raises(HostConfigError):
        parse_host_json({"extensions": {"queues": {"batchSize": 64}}}, env={})
    with pytest.raises(HostConfigError):
        parse_host_json({"extensions": {"queues": {"messageEncoding": "utf8"}}}, env={})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("00:00:01", timedelta(seconds=1)),
        ("1.02:03:04", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("00:00:00.5", timedelta(milliseconds=500)),
        ("00:05", timedelta(minutes=5)),
    ],
)
def test_parse_timespan(text: str, expected: timedelta) -> None:
    assert parse_timespan(text) == expected


# ----------------------------------------------------------------------- keys/auth
@pytest.mark.parametrize(
    ("level", "key", "headers", "query", "ok"),
    [
        ("anonymous", "k", {}, {}, True),
        ("function", None, {}, {}, True),  # keys not enforced without --function-key
        ("function", "k", {}, {}, False),
        ("function", "k", {"X-Functions-Key": "k"}, {}, True),
        ("function", "k", {"x-functions-key": "wrong"}, {}, False),
        ("function", "k", {}, {"code": "k"}, True),
        ("function", "k", {}, {"code": "nope"}, False),
        ("admin", "k", {}, {"code": "k"}, True),
    ],
)
def test_is_authorized(
    level: str, key: str | None, headers: dict[str, str], query: dict[str, str], ok: bool
) -> None:
    assert is_authorized(level, key, CIMultiDict(headers), query) is ok


# --------------------------------------------------------------------- app settings
def test_resolve_setting_expr() -> None:
    assert resolve_setting_expr("%A%-%B%", {"A": "x", "B": "y"}) == "x-y"
    assert resolve_setting_expr("plain", {}) == "plain"


def test_development_storage_expansion() -> None:
    conn = expand_development_storage("UseDevelopmentStorage=true", {"AZURITE_QUEUE_PORT": "20001"})
    assert "QueueEndpoint=http://127.0.0.1:20001/devstoreaccount1;" in conn
    assert DEV_ACCOUNT_KEY in conn
    explicit = "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=b"
    assert expand_development_storage(explicit, {}) == explicit


def test_storage_connection_lookup() -> None:
    assert storage_connection_string("", {"AzureWebJobsStorage": "X=1"}, "t") == "X=1"
    assert storage_connection_string("Mine", {"AzureWebJobsMine": "Y=1"}, "t") == "Y=1"
    with pytest.raises(MissingSettingError, match="Other"):
        storage_connection_string("Other", {}, "t")


def test_local_settings_do_not_override_env(tmp_path: Path) -> None:
    (tmp_path / "local.settings.json").write_text('{"Values": {"A": "file", "B": "file"}}')
    env = {"A": "env"}
    assert apply_local_settings(tmp_path, env) == ["B"]
    assert env == {"A": "env", "B": "file"}


def test_azurite_connection_string() -> None:
    conn = connection_string(AzuritePorts(1, 2, 3))
    assert "BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;" in conn
    assert "QueueEndpoint=http://127.0.0.1:2/devstoreaccount1;" in conn
    assert "TableEndpoint=http://127.0.0.1:3/devstoreaccount1;" in conn


# ------------------------------------------------------------------ queue encoding
def test_message_encoding_round_trip() -> None:
    assert encode_message("héllo", "base64") == base64.b64encode("héllo".encode()).decode()
    assert decode_message(encode_message("héllo", "base64"), "base64") == "héllo".encode()
    assert decode_message("aGk=\n", "base64") == b"hi"  # whitespace ignored like .NET
    assert encode_message("raw", "none") == "raw"
    with pytest.raises(MessageDecodeError):
        decode_message("not base64!!", "base64")


def test_queue_output_values() -> None:
    assert queue_output_messages(None) == []
    assert queue_output_messages("a") == ["a"]
    assert queue_output_messages(["a", b"b"]) == ["a", b"b"]
    with pytest.raises(TypeError):
        queue_output_messages({"a": 1})


# ------------------------------------------------------------------------- invoker
async def test_invoker_sync_async_outputs_and_invocation_id(caplog: pytest.LogCaptureFixture) -> None:
    sent: list[tuple[str, list[str | bytes]]] = []

    async def sink(out: QueueOutputSpec, messages: list[str | bytes]) -> None:
        sent.append((out.queue_name, messages))

    fn_log = logging.getLogger("testapp")

    def sync_fn(req: str, out: Out) -> str:
        fn_log.info("in sync")
        out.set(["m1", "m2"])
        return "ok"

    spec = FunctionSpec(
        name="f",
        func=sync_fn,
        is_async=False,
        trigger_param="req",
        trigger=HttpTriggerSpec("f", None, "function"),
        queue_outputs=[QueueOutputSpec("out", "q1", ""), QueueOutputSpec("$return", "q2", "")],
        params=("req", "out"),
    )
    invoker = Invoker(function_timeout=timedelta(seconds=5), output_sink=sink, app_dir=".")
    caplog.handler.addFilter(InvocationContextFilter())
    with caplog.at_level(logging.INFO):
        result = await invoker.invoke(spec, "x", "test")
    assert result.succeeded
    assert sent == [("q1", ["m1", "m2"]), ("q2", ["ok"])]
    rec = next(r for r in caplog.records if r.getMessage() == "in sync")
    assert rec.invocation_id == result.invocation_id  # type: ignore[attr-defined]

    async def slow(req: str) -> None:
        await asyncio.sleep(5)

    slow_spec = FunctionSpec(
        name="slow",
        func=slow,
        is_async=True,
        trigger_param="req",
        trigger=HttpTriggerSpec("slow", None, "function"),
        params=("req",),
    )
    invoker.function_timeout = timedelta(milliseconds=50)
    result = await invoker.invoke(slow_spec, "x", "test")
    assert not result.succeeded
    assert isinstance(result.error, TimeoutError)
    invoker.shutdown()
