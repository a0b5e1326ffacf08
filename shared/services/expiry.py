"""The secret-expiry check (the timer, and POST /api/alerts/check): warn before any integration secret
expires, with one open alert per secret.

For every memsync secret in Key Vault (properties only, from `SecretStore.list_memsync_secrets`):

1. When does it expire? The integration's `SecretRef` when it was given at registration or read from
   Graph for this very version (`given`, `graph`). Otherwise memsync asks Graph for the app's
   `passwordCredentials` with an app-only token of that app in its home tenant and matches the one whose
   `hint` is the vault secret's first three characters (computed in memory, compared, dropped; never
   stored or logged). When the app may not read itself, it falls back to the Key Vault version's expiry
   attribute if one was set, else assumes 180 days after the secret was stored, and says so (`assumed`)
   on the integration and in every alert. The result is written back to the integration's `SecretRef`.
   (Registration and rotation already read Graph's date: `graph_secret_end`.)
2. Which mark is reached? Mark `m` (MEMSYNC_EXPIRY_THRESHOLDS_DAYS) is reached once the secret expires
   within `m` days (`expiresOn - now <= m days`); mark 0 is the expiry itself. Only the most urgent mark
   reached counts.
3. That mark's alert is raised once per secret version (its id comes from the secret name, version and
   mark, and the insert is idempotent in Table Storage), and it supersedes the open alert of an earlier
   mark of the same version, which is resolved with the reason ("superseded by the 7-day mark"). So a
   secret has one open alert, and each run raises at most one alert per secret: a secret first seen with
   5 days left raises the 7-day alert only; a run after missed days raises the mark reached, not the
   ones passed meanwhile. An open `secretInvalid` / `secretExpired` alert that a sync raised from
   Entra's answer outranks the calendar. A new secret version starts over.
4. Open alerts of a version that is no longer the vault's current one, or of a deleted integration, are
   resolved; a `syncPoisoned` alert is resolved once its tenant has synced successfully since.
5. Alerts not yet delivered to the webhook are posted (shared.services.alerting.deliver_pending); an
   alert superseded before it could be delivered is not posted.

A failing secret (vault, Graph, storage) is reported and skipped; it never stops the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared import sdk
from shared.auth import AppCredential
from shared.clients.applications import ApplicationDirectory, match_by_hint
from shared.clients.keyvault import secret_name
from shared.clock import SYSTEM_CLOCK, Clock
from shared.errors import ActionableError, ErrorCode
from shared.http import ApiError, Budget, CallStats
from shared.models import AppRole, ExpiresOnSource, Integration, IntegrationKind, IntegrationStatus, SecretRef
from shared.services.alerting import (
    ASSUMED_LIFETIME_DAYS,
    INTEGRATION_DELETED,
    SECRET_REPLACED,
    DeliveryReport,
    app_label,
    deliver_pending,
    expiry_alert,
    mark_name,
    most_urgent_mark,
    raise_credential_alert,
    resolve_alert,
    secret_ref_of,
    secret_urgency,
    superseded_reason,
)
from shared.stores.alerts import SECRET_KINDS, Alert, AlertKind, AlertStatus, AlertStore
from shared.stores.tables import unless_contended

if TYPE_CHECKING:
    from shared.clients.keyvault import StoredSecret
    from shared.runtime import Runtime

log = logging.getLogger(__name__)

GRAPH_BUDGET_SECONDS = 60.0
CONCURRENCY = 8

ExpiryLookup = Callable[["Runtime", Integration, SecretRef, "StoredSecret"], Awaitable[datetime | None]]
"""Finds a secret's real expiry (None when it cannot); the default asks Graph."""


@dataclass(frozen=True)
class Expiry:
    expires_on: datetime
    source: ExpiresOnSource


def crossed_marks(expires_on: datetime, now: datetime, thresholds: Iterable[int]) -> list[int]:
    """The marks (days before expiry) already reached at `now`, highest first; only the last of them
    (`most_urgent_mark`) raises an alert."""
    remaining = expires_on - now
    return sorted((m for m in set(thresholds) if remaining <= timedelta(days=m)), reverse=True)


def known_expiry(ref: SecretRef, stored: StoredSecret) -> Expiry | None:
    """The expiry the integration already knows for the vault's current version, when it is not a guess."""
    if ref.expires_on is None or ref.expires_on_source == "assumed":
        return None
    if ref.version is not None and stored.version is not None and ref.version != stored.version:
        return None  # recorded for an earlier version
    return Expiry(ref.expires_on, ref.expires_on_source)


def fallback_expiry(ref: SecretRef, stored: StoredSecret) -> Expiry | None:
    """Without Graph: the Key Vault version's expiry attribute (memsync writes only given dates there,
    never a guess), else creation + 180 days."""
    if stored.expires_on is not None:
        return Expiry(stored.expires_on, "given")
    if stored.created_on is not None:
        return Expiry(stored.created_on + timedelta(days=ASSUMED_LIFETIME_DAYS), "assumed")
    if ref.expires_on is not None:
        return Expiry(ref.expires_on, ref.expires_on_source)
    return None


def home_area(kind: IntegrationKind) -> str:
    """The rate-limit area of Graph reads in an integration's home tenant (shared.ratelimit.AREA_LIMITS)."""
    return "partnerDirectory" if kind is IntegrationKind.MULTI_TENANT else "graphDirectory"


async def graph_secret_end(
    rt: Runtime, tenant_id: str, app: AppCredential, *, area: str, stored_on: datetime | None,
    budget_seconds: float = GRAPH_BUDGET_SECONDS, what: str = "secret",
) -> datetime | None:
    """The `endDateTime` Graph gives for the secret `app` holds, matched by `hint` (its first three
    characters, compared in memory only); None when the app may not read itself (403), Graph cannot be
    reached in `budget_seconds`, or no credential matches. Entra refusing the secret raises ActionableError.
    https://learn.microsoft.com/graph/api/resources/passwordcredential"""
    stats = CallStats()
    api = rt.api(tenant_id, app, area, Budget(budget_seconds), stats, service="graph", label="Microsoft Graph")
    try:
        credentials = await ApplicationDirectory(api, rt.settings.graph_url).list_password_credentials(app.app_id)
    except ApiError as exc:
        # 403: the app lacks Application.Read.All in its home tenant; 404: not registered there.
        log.info("%s: Graph did not give the app's credentials (%s, %s requests); expiry stays unknown",
                 what, exc.status or type(exc).__name__, stats.requests)
        return None
    match = match_by_hint(credentials, app.secret.get_secret_value()[:3], stored_on=stored_on)
    if match is None:
        log.info("%s: none of the app's %d password credentials matches the secret", what, len(credentials))
        return None
    return match.end


async def graph_expiry(
    rt: Runtime, integration: Integration, ref: SecretRef, stored: StoredSecret
) -> datetime | None:
    """The stored secret's `endDateTime` from Graph (`graph_secret_end`), read with its own value from the vault."""
    value = await rt.secrets.get_secret(stored.name, stored.version)
    app = AppCredential(ref.app_id, value, app_label(ref.role))
    return await graph_secret_end(rt, integration.home_tenant_id, app, area=home_area(integration.kind),
                                  stored_on=stored.created_on, what=stored.name)


@dataclass
class ExpiryReport:
    secrets_checked: int = 0
    alerts_raised: int = 0
    alerts_resolved: int = 0
    failures: list[str] = field(default_factory=list)  # "secret-name: ErrorType", nothing secret
    delivery: DeliveryReport = field(default_factory=DeliveryReport)

    def to_json(self) -> dict[str, Any]:
        return {
            "secretsChecked": self.secrets_checked,
            "alertsRaised": self.alerts_raised,
            "alertsResolved": self.alerts_resolved,
            "failures": list(self.failures),
            "delivery": self.delivery.to_json(),
        }


class SecretExpiryCheck:
    """One run of the expiry timer."""

    def __init__(self, rt: Runtime, *, clock: Clock, lookup: ExpiryLookup) -> None:
        self._rt = rt
        self._clock = clock
        self._lookup = lookup
        self._alerts = AlertStore(rt.tables)
        self._thresholds = rt.settings.expiry_thresholds_days
        self.report = ExpiryReport()

    async def run(self) -> ExpiryReport:
        stored = {s.name: s for s in await self._rt.secrets.list_memsync_secrets()}
        integrations = await self._rt.integrations.list_integrations()
        work: list[tuple[Integration, SecretRef, StoredSecret]] = []
        for integration in integrations:
            if integration.status is IntegrationStatus.DISABLED:
                continue
            for role in AppRole:
                name = secret_name(integration.id, role)
                ref = integration.secret(role)
                if name not in stored:
                    if ref is not None:
                        log.warning("integration %s: its %s secret %s is missing from Key Vault",
                                    integration.id, role.value, name)
                    continue
                work.append((integration, ref or secret_ref_of(integration, role), stored[name]))
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(item: tuple[Integration, SecretRef, StoredSecret]) -> None:
            async with gate:
                await self._check_safely(*item)

        await asyncio.gather(*(one(item) for item in work))
        active = {i.id for i in integrations if i.status is not IntegrationStatus.DISABLED}
        await self._resolve_stale(active, stored)
        self.report.delivery = await deliver_pending(self._rt, clock=self._clock)
        return self.report

    async def _check_safely(self, integration: Integration, ref: SecretRef, stored: StoredSecret) -> None:
        try:
            await self._check(integration, ref, stored)
        except (sdk.AzureError, ActionableError, ValueError) as exc:
            log.warning("%s: expiry check failed (%s); retried on the next run", stored.name,
                        type(exc).__name__)
            self.report.failures.append(f"{stored.name}: {type(exc).__name__}")
        else:
            self.report.secrets_checked += 1

    async def _check(self, integration: Integration, ref: SecretRef, stored: StoredSecret) -> None:
        expiry = await self._expiry(integration, ref, stored)
        if expiry is None:
            log.warning("%s: no expiry date and no creation date; cannot warn about it", stored.name)
            return
        await self._record(integration.id, ref, stored.version, expiry)
        now = self._clock.now()
        mark = most_urgent_mark(expiry.expires_on, now, self._thresholds)
        alerts = [a for a, _ in await self._alerts.list_secret_alerts(integration.id, ref.role)
                  if a.kind in SECRET_KINDS and a.secret_name == stored.name and a.secret_version == stored.version]
        wanted = None if mark is None else expiry_alert(
            integration, ref, version=stored.version, mark=mark, expires_on=expiry.expires_on,
            source=expiry.source, now=now, stored_on=stored.created_on)
        open_ = [a for a in alerts if a.status is AlertStatus.OPEN]
        # Entra's own answer (a sync met AADSTS7000215/7000222) outranks the calendar while it is open.
        refused = min((a for a in open_ if a.mark is None), key=secret_urgency, default=None)
        if refused is not None and wanted is not None and secret_urgency(refused) <= secret_urgency(wanted):
            wanted = None
        kept = refused
        if wanted is not None:
            known = next((a for a in alerts if a.id == wanted.id), None)
            if known is None and await self._alerts.create_alert(wanted):
                self.report.alerts_raised += 1
                log.warning("alert %s raised: %s, %d-day mark of %s (%s expiry, %d days left)", wanted.id,
                            wanted.kind.value, mark, stored.name, expiry.source, wanted.days_left)
                kept = wanted
            elif known is not None and known.status is AlertStatus.OPEN:
                kept = known
        for other in open_:
            if other.mark is None or (kept is not None and other.id == kept.id):
                continue  # a refusal by Entra stays open until the secret is rotated
            reason = self._resolution(other, kept, wanted, expiry)
            if reason is not None and await resolve_alert(self._alerts, other, now, reason):
                self.report.alerts_resolved += 1
                log.info("alert %s resolved: %s", other.id, reason)

    @staticmethod
    def _resolution(other: Alert, kept: Alert | None, wanted: Alert | None, expiry: Expiry) -> str | None:
        """Why an open mark alert of the secret's current version goes (None: it stays open)."""
        if kept is not None and secret_urgency(kept) < secret_urgency(other):
            return superseded_reason(kept)
        date = f"{expiry.expires_on:%Y-%m-%d %H:%M} UTC ({expiry.source})"
        if wanted is None and kept is None:
            return f"the secret's expiry date is now {date}: no warning mark is reached"
        if kept is not None and kept.mark is not None:
            # The date moved later (an assumption corrected from Graph): the alert of an earlier mark replaces it.
            return f"the secret's expiry date is now {date}: {mark_name(kept.mark)} replaces it"
        return None

    async def _expiry(self, integration: Integration, ref: SecretRef, stored: StoredSecret) -> Expiry | None:
        if ref.role is AppRole.PARTNER_SIGNIN:
            # A refresh token, not an app secret: Graph knows nothing of it. memsync writes its 90-day
            # sliding end to the vault version's expiry attribute on every renewal.
            end = stored.expires_on or ref.expires_on
            return Expiry(end, "assumed") if end is not None else None
        known = known_expiry(ref, stored)
        if known is not None:
            return known
        try:
            end = await self._lookup(self._rt, integration, ref, stored)
        except ActionableError as exc:
            if exc.code in (ErrorCode.SECRET_EXPIRED, ErrorCode.INVALID_SECRET):
                await raise_credential_alert(self._rt, integration, ref.role, exc, clock=self._clock)
            log.info("%s: no Graph token to read the app's credentials (%s)", stored.name, exc.code.value)
            end = None
        except (sdk.AzureError, ValueError) as exc:  # the vault would not give the value; a malformed app id
            log.info("%s: could not look the secret up (%s)", stored.name, type(exc).__name__)
            end = None
        if end is not None:
            return Expiry(end, "graph")
        return fallback_expiry(ref, stored)

    async def _record(self, integration_id: str, ref: SecretRef, version: str | None, expiry: Expiry) -> None:
        """Write the expiry (and the version it is for) to the integration's SecretRef, unless someone
        changed that SecretRef since it was read (a rotation wins)."""
        updated_ref = ref.model_copy(update={"expires_on": expiry.expires_on,
                                             "expires_on_source": expiry.source,
                                             "version": version or ref.version})
        if updated_ref == ref:
            return
        def change(current: Integration) -> Integration | None:
            now_ref = current.secret(ref.role)
            if now_ref is not None and now_ref != ref:
                return None  # rotated or re-read by someone else; the next run looks again
            return current.model_copy(update={"secrets": [
                *(s for s in current.secrets if s.role != ref.role), updated_ref]})

        await unless_contended(self._rt.integrations.update(integration_id, change))

    async def _resolve_stale(self, integration_ids: set[str], stored: dict[str, StoredSecret]) -> None:
        """Resolve open alerts of a replaced secret version, of a deleted (or disabled) integration, and of
        a poisoned sync whose tenant has synced successfully since."""
        now = self._clock.now()
        for alert, _ in await self._alerts.list_open():
            if alert.integration_id not in integration_ids:
                reason: str | None = INTEGRATION_DELETED
            elif alert.kind is AlertKind.SYNC_POISONED:
                reason = await self._poison_settled(alert)
            else:
                current = stored.get(alert.secret_name)
                replaced = (alert.kind in SECRET_KINDS and current is not None and alert.secret_version is not None
                            and current.version is not None and alert.secret_version != current.version)
                reason = SECRET_REPLACED if replaced else None
            if reason is not None and await resolve_alert(self._alerts, alert, now, reason):
                self.report.alerts_resolved += 1
                log.info("alert %s resolved: %s", alert.id, reason)

    async def _poison_settled(self, alert: Alert) -> str | None:
        """Why a `syncPoisoned` alert is over: its tenant synced since, or is no longer the integration's."""
        tenant = await self._rt.tenants.get_tenant(alert.integration_id, alert.tenant_id or "")
        if tenant is None:
            return "the tenant is no longer one of the integration's tenants"
        if tenant.last_success_at is not None and tenant.last_success_at > alert.raised_at:
            return f"the tenant synced successfully on {tenant.last_success_at:%Y-%m-%d %H:%M} UTC"
        return None


async def check_secret_expiry(
    rt: Runtime, *, clock: Clock = SYSTEM_CLOCK, lookup: ExpiryLookup = graph_expiry
) -> ExpiryReport:
    """The expiry timer's service: see the module docstring."""
    return await SecretExpiryCheck(rt, clock=clock, lookup=lookup).run()

