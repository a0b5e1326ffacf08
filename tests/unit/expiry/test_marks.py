"""Expiry marks with a controllable clock: each mark once per secret version, late marks raised once."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest

from shared.models import AppRole
from shared.services.alerting import days_left
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


def test_days_left_rounds_up_and_is_zero_or_less_once_expired() -> None:
    expires = START + timedelta(days=3)
    assert days_left(expires, START) == 3
    assert days_left(expires, START + timedelta(hours=1)) == 3
    assert days_left(expires, expires - timedelta(hours=1)) == 1
    assert days_left(expires, expires) == 0
    assert days_left(expires, expires + timedelta(days=1, hours=1)) == -1


async def _walk(env: Env, run_offsets_days: list[float]) -> None:
    for offset in run_offsets_days:
        env.clock.set(START + timedelta(days=offset))
        await check_secret_expiry(env.rt, clock=env.clock, lookup=no_graph)


@pytest.mark.parametrize(
    "runs",
    [
        # three times a day, every day, from 40 days left to 2 days past expiry
        [d / 3 for d in range(42 * 3)],
        # missed days: some runs skip one or more marks (14 and 7; 1 and 0 at once)
        [0, 9, 10.5, 10.6, 20, 33.5, 37.2, 41, 41.5],
        # a single run long after expiry
        [0, 50],
    ],
    ids=["every-8-hours", "skipped-runs", "one-late-run"],
)
async def test_a_secret_walking_from_40_days_to_expired_raises_the_six_alerts_once_each(runs: list[float]) -> None:
    env = make_env()
    integration = await env.add_integration(expires_in=timedelta(days=40), source="given")
    await _walk(env, runs)

    alerts = env.all_alerts()
    assert sorted(a.mark for a in alerts if a.mark is not None) == [0, 1, 3, 7, 14, 30]
    assert len(alerts) == 6 and len({a.id for a in alerts}) == 6
    assert all(a.integration_id == integration.id and a.status is AlertStatus.OPEN for a in alerts)
    expired = next(a for a in alerts if a.mark == 0)
    assert expired.kind is AlertKind.SECRET_EXPIRED
    assert expired.expires_on == START + timedelta(days=40)
    # every alert was posted to the webhook exactly once
    assert Counter(b["id"] for b in env.receiver.bodies) == Counter({a.id: 1 for a in alerts})


async def test_late_marks_say_they_are_late() -> None:
    env = make_env()
    await env.add_integration(expires_in=timedelta(days=40), source="given")
    await _walk(env, [0, 35])  # 5 days left: 30, 14 and 7 are crossed at once
    by_mark = {a.mark: a for a in env.all_alerts()}
    assert set(by_mark) == {30, 14, 7}
    assert "raised late" in by_mark[30].message and "raised late" in by_mark[14].message
    assert all(a.days_left == 5 and a.kind is AlertKind.SECRET_EXPIRING for a in by_mark.values())
    assert "expires on 2026-04-10 07:00 UTC, in 5 days" in by_mark[7].message


async def test_marks_behind_a_secret_when_memsync_received_it_are_not_called_late() -> None:
    env = make_env()
    await env.add_integration(expires_in=timedelta(days=10), source="given")
    await _walk(env, [0])  # registered with 10 days left: 30 and 14 were passed before memsync had it
    by_mark = {a.mark: a for a in env.all_alerts()}
    assert set(by_mark) == {30, 14}
    for mark in (30, 14):
        assert "raised late" not in by_mark[mark].message
        assert f"already had fewer than {mark} days left when memsync received it" in by_mark[mark].message


async def test_repeated_runs_on_one_day_raise_nothing_new(env: Env) -> None:
    await env.add_integration(expires_in=timedelta(days=10), source="given")
    for minutes in range(0, 24 * 60, 30):
        env.clock.set(START + timedelta(minutes=minutes))
        report = await check_secret_expiry(env.rt, clock=env.clock, lookup=no_graph)
        assert report.alerts_raised == (2 if minutes == 0 else 0)
    assert len(env.all_alerts()) == 2


async def test_a_new_secret_version_starts_over_and_the_old_versions_alerts_are_resolved(env: Env) -> None:
    integration = await env.add_integration(expires_in=timedelta(days=20), source="given")
    await _walk(env, [0, 10])  # 20 and 10 days left: marks 30 and 14
    old = env.all_alerts()
    assert sorted(a.mark for a in old) == [14, 30]

    # Someone stores a new version straight into the vault (no rotation call): the timer notices.
    name = integration.secrets[0].name
    env.clock.set(START + timedelta(days=11))
    new_version = env.vault.put(name, "Xy7-new-secret-value-0987654321", created_on=env.clock.now(),
                                expires_on=env.clock.now() + timedelta(days=25))
    await check_secret_expiry(env.rt, clock=env.clock, lookup=no_graph)

    alerts = {a.id: a for a in env.all_alerts()}
    assert all(alerts[a.id].status is AlertStatus.RESOLVED for a in old)
    new = [a for a in alerts.values() if a.secret_version == new_version]
    assert [a.mark for a in new] == [30]
    assert new[0].status is AlertStatus.OPEN


async def test_thresholds_come_from_the_setting() -> None:
    env = make_env()
    env.rt.settings = env.rt.settings.model_copy(update={"expiry_thresholds_days": (10, 2)})
    await env.add_integration(expires_in=timedelta(days=40), source="given")
    await _walk(env, list(range(42)))
    assert sorted(a.mark for a in env.all_alerts()) == [2, 10]


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
    assert sorted(a.mark for a in env.all_alerts()) == [14, 30]
    assert all(a.expires_on_source == "graph" for a in env.all_alerts())


async def test_deleted_integrations_alerts_are_resolved(env: Env) -> None:
    integration = await env.add_integration(expires_in=timedelta(days=5), source="given")
    await check_secret_expiry(env.rt, clock=env.clock, lookup=no_graph)
    assert {a.status for a in env.all_alerts()} == {AlertStatus.OPEN}
    await env.rt.integrations.delete_integration(integration.id)
    report = await check_secret_expiry(env.rt, clock=env.clock, lookup=no_graph)
    assert report.alerts_resolved == 3
    assert {a.status for a in env.all_alerts()} == {AlertStatus.RESOLVED}
