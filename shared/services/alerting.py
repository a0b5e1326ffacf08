"""Raising, resolving, delivering and listing alerts about integration secrets and tenant syncs.

For the other areas:

* `raise_credential_alert(rt, integration, role, error)`: a sync or registration that met AADSTS7000222
  (expired) or AADSTS7000215 (invalid) raises `secretExpired` / `secretInvalid` at once, whatever the
  calendar says, and marks the integration (status `error`, `error` = the actionable error).
* `resolve_secret_alerts(rt, integration, role)`: after a successful rotation, resolves the open alerts
  of that secret's earlier versions.
* `resolve_integration_alerts(rt, integration_id)`: a deleted integration's open alerts are resolved.
* `raise_poisoned_sync_alert(rt, job)`: a tenant's sync job that the host moved to `memsync-sync-poison`.

Every alert is raised at most once: its id is derived from the secret's name and version and the mark or
kind (`shared.stores.alerts.alert_id`), and the insert fails in Table Storage when it already exists.
The `secretExpired` alert of a version has the same id whether the expiry timer (mark 0) or a sync (the
AADSTS code) found it first, so an expired secret is reported once.

A secret has at most one open alert, its most urgent (`secret_urgency`): an alert that a more urgent one
replaces (a later mark, or Entra refusing the secret) is resolved with the reason ("superseded by the
7-day mark"), so the webhook carries one message per mark reached, never several at once.

Delivery to MEMSYNC_ALERT_WEBHOOK_URL: an alert is `delivered` only after the receiver answered 2xx; a
failed delivery stays pending and the next timer run tries again. A worker claims an alert (ETag-guarded
write of `deliveryClaimedUntil`) before posting it, so two workers never post the same alert. A failing
webhook is logged (status or exception type, never the URL) and never stops other alerts or a sync.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
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
    IntegrationKind,
    IntegrationStatus,
    SecretRef,
)
from shared.stores.alerts import SECRET_KINDS, Alert, AlertKind, AlertStatus, AlertStore, alert_id
from shared.stores.tables import unless_contended

if TYPE_CHECKING:
    from shared.clients.webhook import AlertWebhook
    from shared.runtime import Runtime
    from shared.stores.queues import SyncJob

log = logging.getLogger(__name__)

ASSUMED_LIFETIME_DAYS = 180
DELIVERY_CLAIM = timedelta(minutes=2)  # longer than one webhook call's timeout
_CREDENTIAL_KINDS = {ErrorCode.SECRET_EXPIRED: AlertKind.SECRET_EXPIRED,
                     ErrorCode.INVALID_SECRET: AlertKind.SECRET_INVALID}
_APP_LABELS = {AppRole.PARTNER: "partner app", AppRole.SYNC: "sync app",
               AppRole.PARTNER_SIGNIN: "partner admin sign-in"}
RELATIONSHIP_KINDS = frozenset({AlertKind.RELATIONSHIP_EXPIRING, AlertKind.RELATIONSHIP_EXPIRED})
RELATIONSHIP_WINDOW_DAYS = 30
# host.json extensions.queues.maxDequeueCount: deliveries of a sync job before the host poisons it.
SYNC_DELIVERIES = 5
INTEGRATION_DELETED = "integration deleted"
SECRET_REPLACED = "secret replaced by a new version"


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


def most_urgent_mark(expires_on: datetime, now: datetime, thresholds: Iterable[int]) -> int | None:
    """The most urgent mark (fewest days before expiry) reached at `now`; None while none is.

    Mark `m` is reached once the secret expires within `m` days; mark 0 is the expiry itself."""
    remaining = expires_on - now
    reached = [m for m in set(thresholds) if remaining <= timedelta(days=m)]
    return min(reached) if reached else None


def secret_urgency(alert: Alert) -> int:
    """How urgent a secret alert is, lower first: Entra refusing the secret as not valid (-1), the expiry
    (0: mark 0, or Entra's AADSTS7000222), then the marks by their days."""
    if alert.kind is AlertKind.SECRET_INVALID:
        return -1
    return alert.mark if alert.mark is not None else 0


def mark_name(mark: int) -> str:
    return "the expiry (0-day mark)" if mark == 0 else f"the {mark}-day mark"


def superseded_reason(by: Alert) -> str:
    """Why an open alert of a secret was resolved in favour of `by`, a more urgent one."""
    if by.kind is AlertKind.SECRET_INVALID:
        return "superseded: Entra ID refuses the secret as not valid"
    if by.mark is None:
        return "superseded: Entra ID refuses the secret as expired"
    return f"superseded by {mark_name(by.mark)}"


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
        tenant_id=tenant.tenant_id,
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


async def resolve_alert(store: AlertStore, alert: Alert, now: datetime, reason: str) -> bool:
    """Resolve one alert, saying why; True when this call resolved it (not when it was resolved already,
    or is gone)."""
    after = await update_alert(store, alert.integration_id, alert.id, lambda a: resolved(a, now, reason))
    return (after is not None and after.status is AlertStatus.RESOLVED and after.resolved_at == now
            and after.resolved_reason == reason)


def resolved(alert: Alert, now: datetime, reason: str) -> Alert | None:
    """The alert resolved at `now` for `reason`; None when it is resolved already (its reason is kept)."""
    if alert.status is AlertStatus.RESOLVED:
        return None
    return alert.model_copy(update={"status": AlertStatus.RESOLVED, "resolved_at": now, "resolved_reason": reason})


async def supersede(store: AlertStore, by: Alert, now: datetime) -> int:
    """Resolve the open alerts of `by`'s secret and version that are less urgent than `by` (one open
    alert per secret); returns how many this call resolved."""
    count = 0
    for other, _ in await store.list_secret_alerts(by.integration_id, by.role):
        if (other.id == by.id or other.status is not AlertStatus.OPEN or other.kind not in SECRET_KINDS
                or other.secret_name != by.secret_name or other.secret_version != by.secret_version
                or secret_urgency(other) <= secret_urgency(by)):
            continue
        reason = superseded_reason(by)
        if await resolve_alert(store, other, now, reason):
            log.info("alert %s resolved: %s", other.id, reason)
            count += 1
    return count


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
    # Entra's answer outranks the calendar: an open expiry warning of this secret is superseded.
    await supersede(store, alert, alert.raised_at)
    await _mark_integration(rt, integration.id, error, ref.version, role)
    found = await store.get_alert(integration.id, alert.id)
    if created and found is not None:
        await _deliver_safely(rt, store, found[0], found[1], clock)
        found = await store.get_alert(integration.id, alert.id)
    return found[0] if found is not None else alert


async def resolve_secret_alerts(
    rt: Runtime, integration: Integration, role: AppRole, *, clock: Clock = SYSTEM_CLOCK,
    reason: str = SECRET_REPLACED,
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
        if alert.status is not AlertStatus.OPEN or alert.kind not in SECRET_KINDS:
            continue
        if current_version is not None and alert.secret_version == current_version:
            continue
        if await resolve_alert(store, alert, now, reason):
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


async def resolve_integration_alerts(
    rt: Runtime, integration_id: str, *, clock: Clock = SYSTEM_CLOCK, reason: str = INTEGRATION_DELETED
) -> int:
    """Resolve every open alert of an integration (it was deleted: nothing is left to act on); returns how
    many this call resolved."""
    store = AlertStore(rt.tables)
    now = clock.now()
    count = 0
    for alert, _ in await store.list_open(integration_id):
        if await resolve_alert(store, alert, now, reason):
            count += 1
    if count:
        log.info("integration %s: %d open alert(s) resolved (%s)", integration_id, count, reason)
    return count


def poisoned_sync_alert(
    integration: Integration, tenant: CustomerTenant, job: SyncJob, *, now: datetime
) -> Alert:
    """The alert for a tenant's sync job that failed on every delivery and went to `memsync-sync-poison`.

    Its id comes from the tenant and its last successful sync: every job of that tenant poisoned before it
    syncs again is the same alert, raised once; after a successful sync a new poisoning is a new alert."""
    customer = tenant.display_name or tenant.default_domain_name or tenant.tenant_id
    since = tenant.last_success_at.isoformat() if tenant.last_success_at else "never"
    last = f" The tenant's last error: {tenant.error.message}" if tenant.error is not None else ""
    if last and not last.endswith("."):
        last += "."
    tenant_ids = '{"tenantIds": ["' + tenant.tenant_id + '"]}'
    return Alert(
        id=alert_id(f"sync-poison/{tenant.tenant_id}", since, AlertKind.SYNC_POISONED.value),
        integration_id=integration.id,
        integration_name=integration.display_name,
        kind=AlertKind.SYNC_POISONED,
        role=AppRole.SYNC,
        app_id=integration.sync_app_id,
        secret_name=f"sync:{tenant.tenant_id}",
        secret_version=since,
        raised_at=now,
        tenant_id=tenant.tenant_id,
        message=(
            f"The sync of tenant '{customer}' ({tenant.tenant_id}) of integration '{integration.display_name}' "
            f"({integration.id}) failed on each of its {SYNC_DELIVERIES} deliveries, so the Functions host "
            f"moved its job (run {job.run_id}, trigger {job.trigger}) to the memsync-sync-poison queue.{last}"
        ),
        action=(
            f"See the tenant's status and error with GET /api/integrations/{integration.id}/tenants and look "
            f"up run {job.run_id} in the function logs (sync_tenant). Once the cause is fixed, sync it again "
            f"with POST /api/integrations/{integration.id}/sync and the body {tenant_ids} (the scheduled sync "
            "tries it again too). The alert is resolved by the next expiry check after the tenant has synced."
        ),
    )


async def raise_poisoned_sync_alert(rt: Runtime, job: SyncJob, *, clock: Clock = SYSTEM_CLOCK) -> Alert | None:
    """Raise `syncPoisoned` for a job the host moved to the poison queue, and deliver it at once. None when
    the job names no live integration, or a tenant that is not one of its tenants (nothing to act on)."""
    integration = await rt.integrations.get_integration(job.integration_id)
    if integration is None or integration.status is IntegrationStatus.DISABLED:
        log.info("poisoned sync job of run %s: integration %s is gone or removed; no alert", job.run_id,
                 job.integration_id)
        return None
    tenant = await rt.tenants.get_tenant(integration.id, job.tenant_id)
    single = integration.kind is IntegrationKind.SINGLE_TENANT
    if tenant is None or (single and (integration.tenant_id or "").lower() != job.tenant_id.lower()):
        log.info("poisoned sync job of run %s: tenant %s is not one of integration %s's tenants; no alert",
                 job.run_id, job.tenant_id, integration.id)
        return None
    alert = poisoned_sync_alert(integration, tenant, job, now=clock.now())
    store = AlertStore(rt.tables)
    if not await store.create_alert(alert):
        log.info("poisoned sync job of run %s: tenant %s already has alert %s", job.run_id, job.tenant_id, alert.id)
    else:
        log.warning("alert %s raised: syncPoisoned, tenant %s of integration %s (run %s)", alert.id,
                    job.tenant_id, integration.id, job.run_id)
        found = await store.get_alert(integration.id, alert.id)
        if found is not None:
            await _deliver_safely(rt, store, found[0], found[1], clock)
    found = await store.get_alert(integration.id, alert.id)
    return found[0] if found is not None else alert


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
