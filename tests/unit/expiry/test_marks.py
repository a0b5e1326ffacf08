"""Expiry marks with a controllable clock: one open alert per secret (the most urgent mark reached), each
mark at most once per secret version, and never several messages for one secret at once."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from itertools import pairwise

import pytest

from shared.models import AppRole
from shared.services.alerting import days_left, most_urgent_mark
from shared.services.expiry import check_secret_expiry, crossed_marks
from shared.stores.alerts import AlertKind, AlertStatus
from tests.unit.expiry.conftest import START, Env, make_env, no_graph

pytestmark = pytest.mark.unit

MARKS = (30, 14, 7, 3, 1, 0)


def test_crossed_marks_are_reached_when_the_secret_expires_within_that_many_days() -> None:
    expires = START + timedelta(days=14)
    assert crossed_marks(expires, START, MARKS) == [30, 14]
    assert crossed_marks(expires, START - timedelta(seconds=1), MARKS) == [30]
    assert crossed_marks(expires, expires - timedelta(seconds=1), MARKS) == [30, 14, 7, 3, 1]
    assert crossed_marks(expires, expires, MARKS) == [30, 14, 7, 3, 1, 0]
    assert crossed_marks(START + timedelta(days=40), START, MARKS) == []


def test_the_most_urgent_mark_is_the_one_with_the_fewest_days() -> None:
    expires = START + timedelta(days=5)
    assert most_urgent_mark(expires, START, MARKS) == 7
    assert most_urgent_mark(expires, expires, MARKS) == 0
    assert most_urgent_mark(expires, expires + timedelta(days=9), MARKS) == 0
    assert most_urgent_mark(START + timedelta(days=31), START, MARKS) is None
    assert most_urgent_mark(START + timedelta(days=30), START, MARKS) == 30


def test_days_left_rounds_up_and_is_zero_or_less_once_expired() -> None:
    expires = START + timedelta(days=3)
    assert days_left(expires, START) == 3
    assert days_left(expires, START + timedelta(hours=1)) == 3
    assert days_left(expires, expires - timedelta(hours=1)) == 1
    assert days_left(expires, expires) == 0
    assert days_left(expires, expires + timedelta(days=1, hours=1)) == -1


async def _walk(env: Env, run_offsets_days: list[float]) -> list[int]:
    """Run the check at each offset; the number of webhook messages each run sent."""
    sent = []
    for offset in run_offsets_days:
        before = len(env.receiver.requests)
        env.clock.set(START + timedelta(days=offset))
        await check_secret_expiry(env.rt, clock=env.clock, lookup=no_graph)
        sent.append(len(env.receiver.requests) - before)
    return sent


@pytest.mark.parametrize(
    ("runs", "raised"),
    [
        # three times a day, every day, from 40 days left to 2 days past expiry: every mark, in turn
        ([d / 3 for d in range(42 * 3)], [30, 14, 7, 3, 1, 0]),
        # missed days: the runs at 6.5 and -1 days left raise the mark reached (7, 0), not 14 or 1 as well
        ([0, 9, 10.5, 10.6, 20, 33.5, 37.2, 41, 41.5], [30, 7, 3, 0]),
        # a single run long after expiry: the expiry alone
        ([0, 50], [0]),
    ],
    ids=["every-8-hours", "skipped-runs", "one-late-run"],
)
async def test_a_secret_walking_to_expiry_has_one_open_alert(runs: list[float], raised: list[int]) -> None:
    env = make_env()
    integration = await env.add_integration(expires_in=timedelta(days=40), source="given")
    sent = await _walk(env, runs)

    alerts = sorted(env.all_alerts(), key=lambda a: a.raised_at)
    assert [a.mark for a in alerts] == raised
    assert all(a.integration_id == integration.id for a in alerts)
    # one open alert: the last; each earlier one was superseded by the next mark
    assert [a.status for a in alerts] == [AlertStatus.RESOLVED] * (len(raised) - 1) + [AlertStatus.OPEN]
    for earlier, later in pairwise(alerts):
        name = "the expiry (0-day mark)" if later.mark == 0 else f"the {later.mark}-day mark"
        assert earlier.resolved_reason == f"superseded by {name}"
        assert earlier.resolved_at == later.raised_at
    expired = alerts[-1]
    assert expired.kind is AlertKind.SECRET_EXPIRED and expired.expires_on == START + timedelta(days=40)
    # one webhook message per mark raised, in order, never two from one run
    assert [b["mark"] for b in env.receiver.bodies] == raised
    assert max(sent) == 1
    assert Counter(b["id"] for b in env.receiver.bodies) == Counter({a.id: 1 for a in alerts})


async def test_a_secret_first_seen_with_5_days_left_raises_one_alert_the_7_day_mark() -> None:
    env = make_env()
    await env.add_integration(expires_in=timedelta(days=5), source="given")
    report = await check_secret_expiry(env.rt, clock=env.clock, lookup=no_graph)
    (alert,) = env.all_alerts()
    assert report.alerts_raised == 1 and alert.mark == 7 and alert.status is AlertStatus.OPEN
    assert alert.days_left == 5 and alert.kind is AlertKind.SECRET_EXPIRING
    assert [b["id"] for b in env.receiver.bodies] == [alert.id]


async def test_a_mark_reached_after_a_missed_run_says_it_is_late() -> None:
    env = make_env()
    await env.add_integration(expires_in=timedelta(days=40), source="given")
    await _walk(env, [0, 35])  # 5 days left: the 7-day mark was passed two days ago
    (alert,) = env.all_alerts()
    assert alert.mark == 7 and alert.days_left == 5 and alert.kind is AlertKind.SECRET_EXPIRING
    assert "raised late: the secret passed that mark on 2026-04-03 07:00 UTC" in alert.message
    assert "expires on 2026-04-10 07:00 UTC, in 5 days" in alert.message


async def test_a_mark_behind_a_secret_when_memsync_received_it_is_not_called_late() -> None:
    env = make_env()
    await env.add_integration(expires_in=timedelta(days=10), source="given")
    await _walk(env, [0])  # registered with 10 days left: 30 and 14 were passed before memsync had it
    (alert,) = env.all_alerts()
    assert alert.mark == 14
    assert "raised late" not in alert.message
    assert "already had fewer than 14 days left when memsync received it" in alert.message


async def test_repeated_runs_on_one_day_raise_nothing_new(env: Env) -> None:
    await env.add_integration(expires_in=timedelta(days=10), source="given")
    for minutes in range(0, 24 * 60, 30):
        env.clock.set(START + timedelta(minutes=minutes))
        report = await check_secret_expiry(env.rt, clock=env.clock, lookup=no_graph)
        assert report.alerts_raised == (1 if minutes == 0 else 0)
    assert len(env.all_alerts()) == 1 and len(env.receiver.requests) == 1


async def test_a_new_secret_version_starts_over_and_the_old_versions_alerts_are_resolved(env: Env) -> None:
    integration = await env.add_integration(expires_in=timedelta(days=20), source="given")
    await _walk(env, [0, 10])  # 20 and 10 days left: mark 30, then 14 supersedes it
    old = env.all_alerts()
    assert {a.mark: a.status for a in old} == {30: AlertStatus.RESOLVED, 14: AlertStatus.OPEN}

    # Someone stores a new version straight into the vault (no rotation call): the timer notices.
    name = integration.secrets[0].name
    env.clock.set(START + timedelta(days=11))
    new_version = env.vault.put(name, "Xy7-new-secret-value-0987654321", created_on=env.clock.now(),
                                expires_on=env.clock.now() + timedelta(days=25))
    await check_secret_expiry(env.rt, clock=env.clock, lookup=no_graph)

    alerts = {a.id: a for a in env.all_alerts()}
    assert all(alerts[a.id].status is AlertStatus.RESOLVED for a in old)
    assert alerts[next(a.id for a in old if a.mark == 14)].resolved_reason == "secret replaced by a new version"
    new = [a for a in alerts.values() if a.secret_version == new_version]
    assert [a.mark for a in new] == [30]
    assert new[0].status is AlertStatus.OPEN


async def test_thresholds_come_from_the_setting() -> None:
    env = make_env()
    env.rt.settings = env.rt.settings.model_copy(update={"expiry_thresholds_days": (10, 2)})
    await env.add_integration(expires_in=timedelta(days=40), source="given")
    await _walk(env, list(range(42)))
    assert sorted(a.mark for a in env.all_alerts()) == [2, 10]
    assert [a.mark for a in env.all_alerts() if a.status is AlertStatus.OPEN] == [2]


async def test_assumed_expiry_is_180_days_after_storing_and_said_so(env: Env) -> None:
    integration = await env.add_integration(expires_in=None)
    report = await check_secret_expiry(env.rt, clock=env.clock, lookup=no_graph)
    assert report.secrets_checked == 1 and report.alerts_raised == 0

    stored = await env.rt.integrations.get_integration(integration.id)
    assert stored is not None
    ref = stored.secret(AppRole.SYNC)
    assert ref is not None and ref.expires_on_source == "assumed"
    assert ref.expires_on == START + timedelta(days=180)

    env.clock.set(START + timedelta(days=151))  # 29 days left
    await check_secret_expiry(env.rt, clock=env.clock, lookup=no_graph)
    (alert,) = env.all_alerts()
    assert alert.mark == 30 and alert.expires_on_source == "assumed"
    assert "The date is assumed, 180 days after the secret was stored" in alert.message
    assert "expiresOnSource" in env.receiver.bodies[0] and env.receiver.bodies[0]["expiresOnSource"] == "assumed"


async def test_a_graph_date_replaces_the_assumption_and_is_not_asked_again(env: Env) -> None:
    integration = await env.add_integration(expires_in=None)
    real_end = START + timedelta(days=12)
    calls = []

    async def graph(rt, integration_, ref, stored):
        calls.append(stored.version)
        return real_end

    await check_secret_expiry(env.rt, clock=env.clock, lookup=graph)
    await check_secret_expiry(env.rt, clock=env.clock, lookup=graph)
    assert len(calls) == 1
    stored = await env.rt.integrations.get_integration(integration.id)
    assert stored is not None
    ref = stored.secret(AppRole.SYNC)
    assert ref is not None and (ref.expires_on, ref.expires_on_source) == (real_end, "graph")
    assert [a.mark for a in env.all_alerts()] == [14]
    assert all(a.expires_on_source == "graph" for a in env.all_alerts())


async def test_deleted_integrations_alerts_are_resolved(env: Env) -> None:
    integration = await env.add_integration(expires_in=timedelta(days=5), source="given")
    await check_secret_expiry(env.rt, clock=env.clock, lookup=no_graph)
    assert {a.status for a in env.all_alerts()} == {AlertStatus.OPEN}
    await env.rt.integrations.delete_integration(integration.id)
    report = await check_secret_expiry(env.rt, clock=env.clock, lookup=no_graph)
    assert report.alerts_resolved == 1
    (alert,) = env.all_alerts()
    assert alert.status is AlertStatus.RESOLVED and alert.resolved_reason == "integration deleted"


async def test_a_date_corrected_later_moves_the_open_alert_with_it(env: Env) -> None:
    """An assumed date that Graph later corrects: the open alert follows the real date, still one open."""
    integration = await env.add_integration(expires_in=None)  # assumed: 180 days after storing
    env.clock.set(START + timedelta(days=178))  # 2 days left by the assumption: the 3-day mark
    await check_secret_expiry(env.rt, clock=env.clock, lookup=no_graph)
    (three,) = env.all_alerts()
    assert three.mark == 3 and three.expires_on_source == "assumed"

    real_end = env.clock.now() + timedelta(days=20)

    async def graph(rt, integration_, ref, stored):
        return real_end

    await check_secret_expiry(env.rt, clock=env.clock, lookup=graph)
    by_mark = {a.mark: a for a in env.all_alerts()}
    assert by_mark[30].status is AlertStatus.OPEN and by_mark[30].expires_on_source == "graph"
    assert by_mark[3].status is AlertStatus.RESOLVED
    assert by_mark[3].resolved_reason == (
        f"the secret's expiry date is now {real_end:%Y-%m-%d %H:%M} UTC (graph): the 30-day mark replaces it")
    stored = await env.rt.integrations.get_integration(integration.id)
    assert stored is not None and stored.secrets[0].expires_on == real_end


async def test_partner_and_sync_secrets_each_keep_their_own_open_alert() -> None:
    env = make_env()
    await env.add_integration(expires_in=timedelta(days=5), source="given", roles=(AppRole.PARTNER, AppRole.SYNC))
    await check_secret_expiry(env.rt, clock=env.clock, lookup=no_graph)
    open_ = [a for a in env.all_alerts() if a.status is AlertStatus.OPEN]
    assert sorted((a.role.value, a.mark) for a in open_) == [("partner", 7), ("sync", 7)]
