"""Raising, resolving, delivering and listing alerts about integration secrets.

For the other areas:

* `raise_credential_alert(rt, integration, role, error)`: a sync or registration that met AADSTS7000222
  (expired) or AADSTS7000215 (invalid) raises `secretExpired` / `secretInvalid` at once, whatever the
  calendar says, and marks the integration (status `error`, `error` = the actionable error).
* `resolve_secret_alerts(rt, integration, role)`: after a successful rotation, resolves the open alerts
  of that secret's earlier versions.

Every alert is raised at most once: its id is derived from the secret's name and version and the mark or
kind (`shared.stores.alerts.alert_id`), and the insert fails in Table Storage when it already exists.
The `secretExpired` alert of a version has the same id whether the expiry timer (mark 0) or a sync (the
AADSTS code) found it first, so an expired secret is reported once.

Delivery to MEMSYNC_ALERT_WEBHOOK_URL: an alert is `delivered` only after the receiver answered 2xx; a
failed delivery stays pending and the next timer run tries again. A worker claims an alert (ETag-guarded
write of `deliveryClaimedUntil`) before posting it, so two workers never post the same alert. A failing
webhook is logged (status or exception type, never the URL) and never stops other alerts or a sync.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared import sdk
from shared.clients.keyvault import secret_name
from shared.clients.webhook import AlertWebhook, WebhookDeliveryError
from shared.clock import SYSTEM_CLOCK, Clock
from shared.errors import ActionableError, ErrorCode
from shared.models import (
    AppRole,
    CustomerTenant,
    ErrorModel,
    ExpiresOnSource,
    GdapRelationship,
    Integration,
    IntegrationStatus,
    SecretRef,
)
from shared.stores.alerts import Alert, AlertKind, AlertStatus, AlertStore, alert_id
from shared.stores.tables import unless_contended

if TYPE_CHECKING:
    from shared.clients.webhook import AlertWebhook
    from shared.runtime import Runtime

log = logging.getLogger(__name__)

ASSUMED_LIFETIME_DAYS = 180
DELIVERY_CLAIM = timedelta(minutes=2)  # longer than one webhook call's timeout
_CREDENTIAL_KINDS = {ErrorCode.SECRET_EXPIRED: AlertKind.SECRET_EXPIRED,
                     ErrorCode.INVALID_SECRET: AlertKind.SECRET_INVALID}
_APP_LABELS = {AppRole.PARTNER: "partner app", AppRole.SYNC: "sync app",
               AppRole.PARTNER_SIGNIN: "partner admin sign-in"}
RELATIONSHIP_KINDS = frozenset({AlertKind.RELATIONSHIP_EXPIRING, AlertKind.RELATIONSHIP_EXPIRED})
RELATIONSHIP_WINDOW_DAYS = 30


# --- what an alert says (pure) ---------------------------------------------------------------------


def app_label(role: AppRole) -> str:
    return _APP_LABELS[role]


def secret_ref_of(integration: Integration, role: AppRole) -> SecretRef:
    """The integration's record of that secret, or one derived from the integration when it has none."""
    ref = integration.secret(role)
    if ref is not None:
        return ref
    app_id = integration.sync_app_id if role is AppRole.SYNC else integration.partner_app_id
    return SecretRef(name=secret_name(integration.id, role), role=role, app_id=app_id or "")


def rotate_action(integration_id: str, app_id: str) -> str:
    return (
        "In the Azure portal > Microsoft Entra ID > App registrations, open the app "
        f"{app_id} > Certificates & secrets and create a new client secret (New client secret), then "
        f"give memsync its Value with PUT /api/integrations/{integration_id}/secrets."
    )


def days_left(expires_on: datetime, now: datetime) -> int:
    """Whole days left, rounded up: 0 or less once expired (-1: expired a day or more ago)."""
    return math.ceil((expires_on - now).total_seconds() / 86400)


def _when(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC")


def _who(integration: Integration, ref: SecretRef) -> str:
    return (
        f"The client secret of the {app_label(ref.role)} ({ref.app_id}) of integration "
        f"'{integration.display_name}' ({integration.id})"
    )


def expiry_alert(
    integration: Integration,
    ref: SecretRef,
    *,
    version: str | None,
    mark: int,
    expires_on: datetime,
    source: ExpiresOnSource,
    now: datetime,
    stored_on: datetime | None = None,
) -> Alert:
    """The alert for one calendar mark (days before expiry) of one secret version.

    Mark 0 is the expiry itself and shares its id with the `secretExpired` credential alert.
    """
    left = days_left(expires_on, now)
    expired = expires_on <= now
    if ref.role is AppRole.PARTNER_SIGNIN:
        return _signin_alert(integration, ref, version=version, mark=mark, expires_on=expires_on, now=now)
    text = f"{_who(integration, ref)} " + (
        f"expired on {_when(expires_on)}." if expired
        else f"expires on {_when(expires_on)}, in {left} day{'' if left == 1 else 's'}."
    )
    if source == "assumed":
        since = f" ({_when(stored_on)})" if stored_on else ""
        text += (
            f" The date is assumed, {ASSUMED_LIFETIME_DAYS} days after the secret was stored in memsync"
            f"{since}: memsync could not read the app's credentials from Microsoft Graph (that needs "
            "Application.Read.All for the app in its home tenant). Check the real date under "
            "Certificates & secrets."
        )
    passed = expires_on - timedelta(days=mark)
    if mark > 0 and stored_on is not None and passed <= stored_on:
        # Not missed by memsync: the secret already had less time left when memsync received it.
        text += (
            f" This is the {mark}-day warning: the secret already had fewer than {mark} days left when "
            f"memsync received it ({_when(stored_on)})."
        )
    elif mark > 0 and left < mark:
        text += f" This is the {mark}-day warning, raised late: the secret passed that mark on {_when(passed)}."
    return Alert(
        id=alert_id(ref.name, version, "secretExpired" if mark == 0 else f"mark-{mark}"),
        integration_id=integration.id,
        integration_name=integration.display_name,
        kind=AlertKind.SECRET_EXPIRED if expired else AlertKind.SECRET_EXPIRING,
        role=ref.role,
        app_id=ref.app_id,
        secret_name=ref.name,
        secret_version=version,
        mark=mark,
        expires_on=expires_on,
        expires_on_source=source,
        days_left=left,
        raised_at=now,
        message=text,
        action=rotate_action(integration.id, ref.app_id),
    )


def signin_action(integration_id: str) -> str:
    return (
        f"Sign in again as a partner admin: POST /api/integrations/{integration_id}/partner-signin, open the "
        "verification page it returns and enter the code (a Partner Center admin agent with a GDAP or DAP "
        "relationship that may consent apps). Each consent memsync makes renews the sign-in for 90 days."
    )


def _signin_alert(
    integration: Integration, ref: SecretRef, *, version: str | None, mark: int, expires_on: datetime,
    now: datetime,
) -> Alert:
    """The partner admin's refresh token lapses 90 days after its last use (Entra's default lifetime):
    https://learn.microsoft.com/entra/identity-platform/refresh-tokens#token-lifetime"""
    left = days_left(expires_on, now)
    expired = expires_on <= now
    who = (f"The partner admin sign-in of integration '{integration.display_name}' ({integration.id}), which "
           "memsync needs to consent the sync app in customers through Partner Center,")
    text = f"{who} " + (
        f"lapsed on {_when(expires_on)}." if expired
        else f"lapses on {_when(expires_on)}, in {left} day{'' if left == 1 else 's'}, unless it is used."
    )
    return Alert(
        id=alert_id(ref.name, version, "secretExpired" if mark == 0 else f"mark-{mark}"),
        integration_id=integration.id,
        integration_name=integration.display_name,
        kind=AlertKind.SECRET_EXPIRED if expired else AlertKind.SECRET_EXPIRING,
        role=ref.role,
        app_id=ref.app_id,
        secret_name=ref.name,
        secret_version=version,
        mark=mark,
        expires_on=expires_on,
        expires_on_source="assumed",
        days_left=left,
        raised_at=now,
        message=text,
        action=signin_action(integration.id),
    )


def relationship_alert(
    integration: Integration, tenant: CustomerTenant, relationship: GdapRelationship, *, mark: int, now: datetime
) -> Alert | None:
    """The alert for one mark (days before the end) of one GDAP relationship; None without an end date.

    Its id comes from the relationship id, its end date and the mark: raised once each, and again for a
    relationship that was extended to a new end date."""
    end = relationship.end_date_time
    if end is None:
        return None
    left = days_left(end, now)
    expired = end <= now
    customer = tenant.display_name or tenant.default_domain_name or tenant.tenant_id
    name = relationship.display_name or relationship.id
    text = (
        f"The GDAP relationship '{name}' ({relationship.id}) with customer '{customer}' ({tenant.tenant_id}) "
        + (f"ended on {_when(end)}." if expired
           else f"ends on {_when(end)}, in {left} day{'' if left == 1 else 's'}.")
        + " Without an active admin relationship memsync cannot consent its sync app there through Partner "
        "Center (a consent already made keeps working)."
    )
    action = (
        f"In Partner Center > Customers > {customer} > Admin relationships, extend the relationship (or turn "
        "on auto-extend, which needs a relationship without Global Administrator), or request a new one with "
        "the roles you need (Cloud Application Administrator for consent) and have the customer approve it "
        "before the end date."
    )
    return Alert(
        id=alert_id(f"gdap/{relationship.id}", end.isoformat(), f"relationship-mark-{mark}"),
        integration_id=integration.id,
        integration_name=integration.display_name,
        kind=AlertKind.RELATIONSHIP_EXPIRED if expired else AlertKind.RELATIONSHIP_EXPIRING,
        role=AppRole.PARTNER,
        app_id=integration.partner_app_id or "",
        secret_name=f"gdap:{relationship.id}",
        secret_version=end.isoformat(),
        mark=mark,
        expires_on=end,
        days_left=left,
        raised_at=now,
        message=text,
        action=action,
    )


def relationship_mark(end: datetime, now: datetime, thresholds: list[int]) -> int | None:
    """The most urgent mark reached (within 30 days, or 0 once ended); None when none is.

    Only that one is raised: a relationship first seen long after it ended gets one alert, not six."""
    remaining = end - now
    reached = [m for m in set(thresholds) | {0} if m <= RELATIONSHIP_WINDOW_DAYS
               and remaining <= timedelta(days=m)]
    return min(reached) if reached else None


def credential_alert(
    integration: Integration, ref: SecretRef, error: ActionableError, *, now: datetime
) -> Alert | None:
    """The alert for a secret Entra refused (expired or invalid); None for any other error."""
    kind = _CREDENTIAL_KINDS.get(error.code)
    if kind is None:
        return None
    expires_on = ref.expires_on
    return Alert(
        id=alert_id(ref.name, ref.version, kind.value),
        integration_id=integration.id,
        integration_name=integration.display_name,
        kind=kind,
        role=ref.role,
        app_id=ref.app_id,
        secret_name=ref.name,
        secret_version=ref.version,
        expires_on=expires_on,
        expires_on_source=ref.expires_on_source if expires_on else None,
        days_left=days_left(expires_on, now) if expires_on else None,
        raised_at=now,
        message=f"Integration '{integration.display_name}' ({integration.id}): {error.info.message}",
        action=error.info.action.replace("{id}", integration.id),
    )


# --- storage helpers -------------------------------------------------------------------------------


async def update_alert(
    store: AlertStore, integration_id: str, alert_id_: str, change: Callable[[Alert], Alert | None]
) -> Alert | None:
    """`store.update`, except that an alert that kept changing is left for the next run (logged)."""
    return await unless_contended(store.update(integration_id, alert_id_, change))


async def resolve_alert(store: AlertStore, alert: Alert, now: datetime) -> bool:
    """Resolve one alert; True when this call resolved it (not when it was resolved already, or is gone)."""
    after = await update_alert(store, alert.integration_id, alert.id, lambda a: resolved(a, now))
    return after is not None and after.status is AlertStatus.RESOLVED and after.resolved_at == now


def resolved(alert: Alert, now: datetime) -> Alert | None:
    if alert.status is AlertStatus.RESOLVED:
        return None
    return alert.model_copy(update={"status": AlertStatus.RESOLVED, "resolved_at": now})


def marked(current: Integration, error: ActionableError, version: str | None, role: AppRole) -> Integration | None:
    """The integration in `error` with the actionable error (a disabled one stays disabled), or None when
    the secret was rotated since the failure or the mark is already there."""
    ref = current.secret(role)
    if ref is not None and version is not None and ref.version not in (None, version):
        log.info("integration %s: the %s secret was rotated since it failed; not marking it",
                 current.id, role.value)
        return None
    info = error.info
    model = ErrorModel(code=info.code.value, message=info.message, action=info.action.replace("{id}", current.id))
    status = current.status if current.status is IntegrationStatus.DISABLED else IntegrationStatus.ERROR
    if current.status == status and current.error == model:
        return None
    return current.model_copy(update={"status": status, "error": model})


async def _mark_integration(rt: Runtime, integration_id: str, error: ActionableError, version: str | None,
                            role: AppRole) -> None:
    """Status error + the actionable error, unless the secret was rotated since the failure (`marked`)."""
    await unless_contended(
        rt.integrations.update(integration_id, lambda current: marked(current, error, version, role)))


# --- for the sync and registration areas -----------------------------------------------------------


async def raise_credential_alert(
    rt: Runtime, integration: Integration, role: AppRole, error: ActionableError, *,
    clock: Clock = SYSTEM_CLOCK,
) -> Alert | None:
    """Raise `secretExpired` / `secretInvalid` for a secret Entra refused, and mark the integration.

    Other error codes are not credential alerts: returns None without doing anything. Returns the alert
    (the stored one when it had been raised before). The webhook is tried at once; a failed delivery is
    left for the next expiry timer run and never raised to the caller.
    """
    ref = secret_ref_of(integration, role)
    alert = credential_alert(integration, ref, error, now=clock.now())
    if alert is None:
        return None
    store = AlertStore(rt.tables)
    created = await store.create_alert(alert)
    if created:
        log.warning("alert %s raised: %s %s secret of integration %s (%s)", alert.id, alert.kind.value,
                    role.value, integration.id, error.code.value)
    await _mark_integration(rt, integration.id, error, ref.version, role)
    found = await store.get_alert(integration.id, alert.id)
    if created and found is not None:
        await _deliver_safely(rt, store, found[0], found[1], clock)
        found = await store.get_alert(integration.id, alert.id)
    return found[0] if found is not None else alert


async def resolve_secret_alerts(
    rt: Runtime, integration: Integration, role: AppRole, *, clock: Clock = SYSTEM_CLOCK
) -> int:
    """Resolve the open alerts of the secret's earlier versions (call after a successful rotation, with
    the integration as it now is). Alerts already raised for the new version stay open. Returns how many
    were resolved."""
    current = integration.secret(role)
    current_version = current.version if current is not None else None
    store = AlertStore(rt.tables)
    count = 0
    now = clock.now()
    for alert, _ in await store.list_secret_alerts(integration.id, role):
        if alert.status is not AlertStatus.OPEN or alert.kind in RELATIONSHIP_KINDS:
            continue
        if current_version is not None and alert.secret_version == current_version:
            continue
        if await resolve_alert(store, alert, now):
            count += 1
    if count:
        log.info("integration %s: %d alert(s) of the %s secret resolved by rotation", integration.id, count,
                 role.value)
    return count


async def raise_relationship_alerts(
    rt: Runtime, integration: Integration, tenant: CustomerTenant, relationships: list[GdapRelationship],
    *, clock: Clock = SYSTEM_CLOCK,
) -> list[Alert]:
    """Raise `relationshipExpiring` / `relationshipExpired` for the customer's GDAP relationships that end
    within 30 days or have ended (once per relationship, end date and mark); a terminated relationship
    is a decision, not an expiry, and raises nothing. Returns the alerts newly raised."""
    now = clock.now()
    store = AlertStore(rt.tables)
    raised: list[Alert] = []
    for relationship in relationships:
        if relationship.end_date_time is None or (relationship.status or "").lower().startswith("terminat"):
            continue
        mark = relationship_mark(relationship.end_date_time, now, list(rt.settings.expiry_thresholds_days))
        if mark is None:
            continue
        alert = relationship_alert(integration, tenant, relationship, mark=mark, now=now)
        if alert is None or not await store.create_alert(alert):
            continue
        log.warning("alert %s raised: %s, GDAP relationship %s of tenant %s (%d days left)", alert.id,
                    alert.kind.value, relationship.id, tenant.tenant_id, alert.days_left or 0)
        raised.append(alert)
        found = await store.get_alert(integration.id, alert.id)
        if found is not None:
            await _deliver_safely(rt, store, found[0], found[1], clock)
    return raised


# --- delivery --------------------------------------------------------------------------------------


@dataclass
class DeliveryReport:
    configured: bool = False
    delivered: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)  # "alert-id: HTTP 500", never a URL

    def to_json(self) -> dict[str, Any]:
        return {"configured": self.configured, "delivered": self.delivered, "failed": self.failed,
                "errors": list(self.errors)}


def alert_webhook(rt: Runtime) -> AlertWebhook | None:
    url = rt.settings.alert_webhook_url
    if url is None or not url.get_secret_value():
        return None
    return AlertWebhook(rt.http, url, rt.settings.alert_webhook_format)


async def _deliver(
    store: AlertStore, webhook: AlertWebhook, alert: Alert, etag: str, now: datetime, report: DeliveryReport
) -> None:
    """Claim, post, record the outcome in the alert and in `report`. Nothing to do for an alert that is
    delivered, resolved, or claimed by another worker."""
    if alert.delivered or alert.status is not AlertStatus.OPEN:
        return
    if alert.delivery_claimed_until is not None and alert.delivery_claimed_until > now:
        return  # another worker is posting it right now
    claimed = alert.model_copy(update={"delivery_claimed_until": now + DELIVERY_CLAIM,
                                       "delivery_attempts": alert.delivery_attempts + 1})
    if await store.replace_if_unchanged(claimed, etag) is None:
        return  # someone else claimed or changed it first
    try:
        await webhook.post(claimed)
    except WebhookDeliveryError as exc:
        reason = exc.reason
        await update_alert(store, alert.integration_id, alert.id, lambda a: a.model_copy(
            update={"delivery_claimed_until": None, "last_delivery_error": reason}))
        log.warning("alert %s: webhook delivery failed (%s); retried on the next run", alert.id, reason)
        report.failed += 1
        report.errors.append(f"{alert.id}: {reason}")
        return
    await update_alert(store, alert.integration_id, alert.id, lambda a: a.model_copy(
        update={"delivered": True, "delivered_at": now, "delivery_claimed_until": None,
                "last_delivery_error": None}))
    log.info("alert %s delivered to the %s webhook", alert.id, webhook.format)
    report.delivered += 1


async def _deliver_safely(rt: Runtime, store: AlertStore, alert: Alert, etag: str, clock: Clock) -> None:
    """Immediate delivery on behalf of a sync: nothing it meets may fail the sync."""
    webhook = alert_webhook(rt)
    if webhook is None:
        return
    try:
        await _deliver(store, webhook, alert, etag, clock.now(), DeliveryReport(configured=True))
    except sdk.AzureError as exc:
        log.warning("alert %s: delivery bookkeeping failed (%s); retried on the next run", alert.id,
                    type(exc).__name__)


async def deliver_pending(rt: Runtime, *, clock: Clock = SYSTEM_CLOCK) -> DeliveryReport:
    """Post every open alert not yet delivered, oldest first; failures stay pending for the next run."""
    webhook = alert_webhook(rt)
    report = DeliveryReport(configured=webhook is not None)
    if webhook is None:
        return report
    store = AlertStore(rt.tables)
    pending = await store.list_undelivered()
    pending.sort(key=lambda p: (p[0].raised_at, -(p[0].mark if p[0].mark is not None else -1)))
    for alert, etag in pending:
        try:
            await _deliver(store, webhook, alert, etag, clock.now(), report)
        except sdk.AzureError as exc:  # storage trouble with one alert must not hold back the others
            report.failed += 1
            report.errors.append(f"{alert.id}: {type(exc).__name__}")
    return report


# --- GET /api/alerts -------------------------------------------------------------------------------


async def list_alerts(
    rt: Runtime, *, top: int, integration_id: str | None, status: AlertStatus | None, continuation: Any,
) -> tuple[list[dict[str, Any]], dict[str, str] | None]:
    """One page of alerts as the API's alert dicts (docs/api.md), and the store position of the next page (None on
    the last); the API layer wraps the position in its opaque continuation token."""
    alerts, position = await AlertStore(rt.tables).list_page(
        top=top, integration_id=integration_id, status=status, continuation=continuation
    )
    return [a.to_api() for a in alerts], position
