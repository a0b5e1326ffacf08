"""The secret-expiry check the timer runs: warn before any integration secret expires, once per mark.

For every memsync secret in Key Vault (properties only, from `SecretStore.list_memsync_secrets`):

1. When does it expire? The integration's `SecretRef` when it was given at registration or read from
   Graph for this very version (`given`, `graph`). Otherwise memsync asks Graph for the app's
   `passwordCredentials` with an app-only token of that app in its home tenant and matches the one whose
   `hint` is the vault secret's first three characters (computed in memory, compared, dropped; never
   stored or logged). When the app may not read itself, it falls back to the Key Vault version's expiry
   attribute if one was set, else assumes 180 days after the secret was stored, and says so (`assumed`)
   on the integration and in every alert. The result is written back to the integration's `SecretRef`.
2. Which marks are crossed? Mark `m` (MEMSYNC_EXPIRY_THRESHOLDS_DAYS) is crossed once the secret expires
   within `m` days (`expiresOn - now <= m days`); mark 0 is the expiry itself.
3. Every crossed mark raises its alert once per secret version: the alert id comes from the secret name,
   version and mark, and the insert is idempotent in Table Storage. A run that finds several marks
   crossed since the last one (a missed day, a newly registered secret) raises each of them, once, and
   the late ones say so; a timer that runs many times a day raises nothing new. A new secret version
   starts over.
4. Open alerts of a version that is no longer the vault's current one, or of a deleted integration, are
   resolved.
5. Alerts not yet delivered to the webhook are posted (shared.services.alerting.deliver_pending).

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
from shared.http import ApiClient, ApiError, Budget, CallStats
from shared.models import AppRole, ExpiresOnSource, Integration, IntegrationStatus, SecretRef
from shared.services.alerting import (
    ASSUMED_LIFETIME_DAYS,
    DeliveryReport,
    app_label,
    deliver_pending,
    expiry_alert,
    raise_credential_alert,
    resolve_alert,
    secret_ref_of,
)
from shared.stores.alerts import AlertStore
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
    """The marks (days before expiry) already reached at `now`, highest first."""
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


async def graph_expiry(
    rt: Runtime, integration: Integration, ref: SecretRef, stored: StoredSecret
) -> datetime | None:
    """The secret's `endDateTime` from Graph, matched by `hint`; None when the app may not read itself,
    Graph cannot be reached, or no credential matches. Entra refusing the secret raises ActionableError."""
    value = await rt.secrets.get_secret(stored.name, stored.version)
    app = AppCredential(ref.app_id, value, app_label(ref.role))
    tenant_id = integration.home_tenant_id
    scope = rt.settings.cloud.graph_scope

    async def token(fresh: bool) -> str:
        return await rt.tokens.get_token(tenant_id, app, scope, fresh=fresh)

    stats = CallStats()
    api = ApiClient(rt.http, service="Microsoft Graph", token=token,
                    budget=Budget(GRAPH_BUDGET_SECONDS), stats=stats)
    try:
        credentials = await ApplicationDirectory(api, rt.settings.graph_url).list_password_credentials(
            ref.app_id)
    except ApiError as exc:
        # 403: the app lacks Application.Read.All in its home tenant; 404: not registered there.
        log.info("%s: Graph did not give the app's credentials (%s, %s requests); expiry stays unknown",
                 stored.name, exc.status or type(exc).__name__, stats.requests)
        return None
    match = match_by_hint(credentials, value.get_secret_value()[:3], stored_on=stored.created_on)
    if match is None:
        log.info("%s: none of the app's %d password credentials matches the stored secret", stored.name,
                 len(credentials))
        return None
    return match.end


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
        marks = crossed_marks(expiry.expires_on, now, self._thresholds)
        if not marks:
            return
        raised_before = {a.id for a, _ in await self._alerts.list_secret_alerts(integration.id, ref.role)}
        for mark in marks:
            alert = expiry_alert(integration, ref, version=stored.version, mark=mark,
                                 expires_on=expiry.expires_on, source=expiry.source, now=now,
                                 stored_on=stored.created_on)
            if alert.id in raised_before:
                continue
            if await self._alerts.create_alert(alert):
                self.report.alerts_raised += 1
                log.warning("alert %s raised: %s, %d-day mark of %s (%s expiry, %d days left)", alert.id,
                            alert.kind.value, mark, stored.name, expiry.source, alert.days_left)

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
        """Resolve open alerts of a replaced secret version or of a deleted (or disabled) integration."""
        now = self._clock.now()
        for alert, _ in await self._alerts.list_open():
            current = stored.get(alert.secret_name)
            gone = alert.integration_id not in integration_ids
            replaced = (current is not None and alert.secret_version is not None
                        and current.version is not None and alert.secret_version != current.version)
            if not (gone or replaced):
                continue
            if await resolve_alert(self._alerts, alert, now):
                self.report.alerts_resolved += 1
                log.info("alert %s resolved: %s", alert.id,
                         "integration deleted" if gone else "secret replaced by a new version")


async def check_secret_expiry(
    rt: Runtime, *, clock: Clock = SYSTEM_CLOCK, lookup: ExpiryLookup = graph_expiry
) -> ExpiryReport:
    """The expiry timer's service: see the module docstring."""
    return await SecretExpiryCheck(rt, clock=clock, lookup=lookup).run()

