"""Register, re-key, sync on demand and remove integrations; credentials are tried before anything is stored.

Registration asks Entra ID for the tokens the syncs will need, in the tenant that owns the apps: the
partner app for Partner Center and Graph (multi-tenant), the sync app for Graph and, with Defender, for
Defender for Endpoint. The sync app's tokens must carry the application permissions the sync uses in their
`roles` claim. Every failure is mapped to the registration codes of docs/api.md with an action, and all
are reported at once.

Secrets go to Key Vault only; the integration record keeps their names and expiry dates. Each secret's
expiry is read from Graph at once (the app's `passwordCredentials`, matched by hint): a date the admin
gave that differs is corrected to Graph's (`expiresOnSource: graph`, as is a date Graph gives when none
was); when the app may not read itself, the given date (or 180 days, `assumed`) stays. A step that fails
after the vault write undoes what was written, so a failed request leaves nothing half-made.
https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow

One integration per (home tenant, sync app), however many requests race: before anything else is stored,
a registration inserts the pair's claim row, which the storage service lets exactly one insert create. A
registration that is refused or fails releases it, and so does removal (docs/data-model.md, registration
claims).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import SecretStr

from shared import sdk
from shared.auth import AppCredential, token_roles
from shared.clients.keyvault import SecretDeleted, secret_name
from shared.entities import ENTITIES, chosen_areas
from shared.errors import (
    FIELD_HINTS,
    PERMANENT_CODES,
    ActionableError,
    Conflict,
    CredentialsRejected,
    ErrorCode,
    FieldProblem,
    InvalidInput,
    NotFound,
    ServiceUnavailable,
    credential_problem,
    permission_missing,
    unreachable,
)
from shared.models import (
    AppRole,
    ExpiresOnSource,
    Integration,
    IntegrationKind,
    IntegrationStatus,
    NewIntegration,
    NewSecrets,
    SecretRef,
    TenantFilter,
    TenantStatus,
)
from shared.permissions import Resource, lacking, optional_roles, required_roles
from shared.services.alerting import app_label, resolve_integration_alerts, resolve_secret_alerts
from shared.services.expiry import Expiry, graph_secret_end, home_area
from shared.services.fanout import enqueue_integration
from shared.services.queries import load_integration
from shared.stores.assets import AssetStore
from shared.stores.tables import WRITE_ATTEMPTS, Contended, utcnow

if TYPE_CHECKING:
    from shared.runtime import Runtime

log = logging.getLogger(__name__)

# The application permissions a sync needs, and what implies them: shared/permissions.py.
GRAPH_ROLES = required_roles(Resource.GRAPH)
DEFENDER_ROLES = required_roles(Resource.DEFENDER)
# Entra's default client-secret lifetime in the portal is 180 days ("Recommended: 180 days").
ASSUMED_SECRET_LIFETIME = timedelta(days=180)
TOKEN_CHECK_SECONDS = 30.0
# Reading a new secret's date from Graph may hold a registration or rotation this long at most; past it
# the given (or assumed) date stays and the daily expiry check reads Graph again.
EXPIRY_LOOKUP_SECONDS = 15.0
# A registration holds the claim on its (home tenant, sync app) from before its first write until its record
# is stored. The Functions host ends every invocation after host.json's functionTimeout (10 minutes), so a
# claim that old whose integration does not exist was left by a registration that never finished.
CLAIM_PENDING = timedelta(minutes=10)
# Errors about an app's secret or its standing in a tenant (every permanent code but the licence): a
# secret just proven to work clears them.
_CREDENTIAL_CODES = PERMANENT_CODES - {ErrorCode.INTUNE_NOT_LICENSED}

# shared.services.fanout.enqueue_integration(rt, integration, trigger, tenant_ids=None) -> int
Enqueue = Callable[..., Awaitable[int]]


@dataclass(frozen=True)
class Audience:
    scope: str
    roles: tuple[str, ...]  # application permissions the token must carry; () = a token is enough
    service: str
    optional: tuple[str, ...] = ()  # permissions of optional entities: a warning when absent, not a refusal


@dataclass(frozen=True)
class AppCheck:
    """One app to try in one tenant, and the request fields its problems are reported on."""

    role: AppRole
    tenant_id: str
    app: AppCredential
    audiences: tuple[Audience, ...]
    id_field: str
    secret_field: str
    tenant_field: str

    def field_for(self, code: ErrorCode) -> str:
        if code in (ErrorCode.INVALID_SECRET, ErrorCode.SECRET_EXPIRED):
            return self.secret_field
        if code == ErrorCode.TENANT_NOT_FOUND:
            return self.tenant_field
        return self.id_field


def _partner_check(rt: Runtime, tenant_id: str, app_id: str, secret: SecretStr) -> AppCheck:
    cloud = rt.settings.cloud
    return AppCheck(
        AppRole.PARTNER,
        tenant_id,
        AppCredential(app_id, secret, "partner app"),
        (
            Audience(cloud.partner_center_scope, (), "Partner Center"),
            Audience(cloud.graph_scope, (), "Graph"),
        ),
        "partnerAppId",
        "partnerAppSecret",
        "partnerTenantId",
    )


def _sync_check(
    rt: Runtime, tenant_id: str, app_id: str, secret: SecretStr, *, defender: bool, tenant_field: str,
    collect: list[str] | None = None,
) -> AppCheck:
    """The sync app in `tenant_id`. In a single tenant its token must carry the sync's permissions. In the
    partner tenant (multi-tenant) a token proves the secret and the app; the permissions that matter are
    the ones consented in each customer, which each tenant's sync checks and reports (permissionMissing
    on that tenant), since the app need not be granted anything in its own home tenant."""
    cloud = rt.settings.cloud
    if tenant_field == "partnerTenantId":
        audiences = [Audience(cloud.graph_scope, (), "Graph")]
    else:
        # The optional permissions asked about are those of the entities this integration collects.
        areas = chosen_areas(include_defender=defender, collect=collect)
        audiences = [Audience(cloud.graph_scope, GRAPH_ROLES, "Graph", optional_roles(Resource.GRAPH, areas))]
        if defender:
            audiences.append(Audience(cloud.defender_scope, DEFENDER_ROLES, "Defender for Endpoint",
                                      optional_roles(Resource.DEFENDER, areas)))
    return AppCheck(
        AppRole.SYNC,
        tenant_id,
        AppCredential(app_id, secret, "sync app"),
        tuple(audiences),
        "syncAppId",
        "syncAppSecret",
        tenant_field,
    )


async def _token(rt: Runtime, check: AppCheck, audience: Audience) -> str:
    try:
        # fresh: a token cached before an admin granted a permission would still lack it.
        return await asyncio.wait_for(
            rt.tokens.get_token(check.tenant_id, check.app, audience.scope, fresh=True), TOKEN_CHECK_SECONDS
        )
    except TimeoutError:
        raise unreachable("Microsoft Entra ID", f"no answer within {TOKEN_CHECK_SECONDS:.0f} s") from None


async def check_app(
    rt: Runtime, check: AppCheck, warnings: list[FieldProblem] | None = None
) -> list[FieldProblem]:
    """The problems with one app in one tenant; [] when every token it needs comes with its permissions.
    Optional permissions the token lacks go to `warnings` (when given): the sync goes on without them."""
    missing: list[str] = []
    unavailable: list[FieldProblem] = []
    for audience in check.audiences:
        try:
            token = await _token(rt, check, audience)
        except ActionableError as exc:
            if exc.code is ErrorCode.DEFENDER_UNAVAILABLE:
                # AADSTS500011 for Defender's API: Defender is not set up in the tenant, so the app cannot
                # hold Machine.Read.All there; a permissionMissing that says so (credential_problem).
                unavailable.append(credential_problem(exc, check.id_field))
                continue
            return [credential_problem(exc, check.field_for(exc.code))]
        granted = token_roles(token)
        missing.extend(lacking(audience.roles, granted))
        absent = lacking(audience.optional, granted) if granted else []
        if absent and warnings is not None:
            warnings.append(FieldProblem(check.id_field, ErrorCode.PERMISSION_MISSING, (
                f"The app {check.app.app_id} lacks the optional application permission(s) {', '.join(absent)} "
                f"in tenant {check.tenant_id}: the sync goes on without what they read "
                f"({optional_reads(absent)})."), (
                f"To collect it, add the application permission(s) {', '.join(absent)} to the app "
                f"registration {check.app.app_id} (API permissions) and grant admin consent.")))
    if missing:
        refused = permission_missing(missing, app_id=check.app.app_id, tenant_id=check.tenant_id)
        return [credential_problem(refused, check.id_field), *unavailable]
    return unavailable


async def check_credentials(
    rt: Runtime, checks: list[AppCheck], warnings: list[FieldProblem] | None = None
) -> list[FieldProblem]:
    results = await asyncio.gather(*(check_app(rt, c, warnings) for c in checks))
    return [e for found in results for e in found]


def optional_reads(permissions: list[str]) -> str:
    """The optional entities that read with `permissions`, for messages."""
    names = [e.name for e in ENTITIES.values() if e.optional and e.permission.name in permissions]
    return ", ".join(names) or "optional data"


def _expiry(given: datetime | None, now: datetime) -> tuple[datetime, ExpiresOnSource]:
    return (given, "given") if given is not None else (now + ASSUMED_SECRET_LIFETIME, "assumed")


async def secret_expiry(
    rt: Runtime, tenant_id: str, app: AppCredential, given: datetime | None, *, kind: IntegrationKind
) -> Expiry:
    """A new secret's expiry: Graph's `endDateTime` for it when the app may read itself (`graph`; a given
    date that differs is corrected to it, one that matches stays `given`), else the given date, else 180
    days from now (`assumed`)."""
    now = utcnow()
    what = f"the {app.label} {app.app_id}"
    try:
        end = await asyncio.wait_for(
            graph_secret_end(rt, tenant_id, app, area=home_area(kind), stored_on=now,
                             budget_seconds=EXPIRY_LOOKUP_SECONDS, what=what),
            EXPIRY_LOOKUP_SECONDS,
        )
    except (ActionableError, TimeoutError) as exc:
        log.info("%s: its secret's expiry could not be read from Graph (%s); keeping the %s date", what,
                 exc.code.value if isinstance(exc, ActionableError) else "timeout",
                 "given" if given is not None else "assumed")
        end = None
    if end is None:
        return Expiry(*_expiry(given, now))
    if given == end:
        return Expiry(given, "given")  # confirmed: nothing to correct
    if given is not None:
        log.info("%s: the expiry date given differs from Graph's; Graph's is kept", what)
    return Expiry(end, "graph")


async def _write_secret(
    rt: Runtime, integration_id: str, role: AppRole, app_id: str, value: SecretStr, expiry: Expiry
) -> SecretRef:
    expires_on, source = expiry.expires_on, expiry.source
    name = secret_name(integration_id, role)
    version = await rt.secrets.set_secret(
        name,
        value,
        # An assumed date is a guess: written to the vault it could lock out a secret that still works.
        expires_on=None if source == "assumed" else expires_on,
        tags={"integrationId": integration_id, "role": role.value, "appId": app_id},
    )
    return SecretRef(
        name=name, role=role, app_id=app_id, expires_on=expires_on, expires_on_source=source, version=version
    )


# --- one integration per (home tenant, sync app) -----------------------------------------------------


def _duplicate(existing: Integration) -> Conflict:
    return Conflict(
        ErrorCode.ALREADY_REGISTERED,
        "syncAppId",
        f"This sync app is already registered for this tenant as integration {existing.id}.",
        f"See it with GET /api/integrations/{existing.id}; use PUT /api/integrations/{existing.id}/secrets "
        f"to give it new secrets, or DELETE /api/integrations/{existing.id} before registering it again.",
    )


def _in_progress(integration_id: str) -> Conflict:
    minutes = int(CLAIM_PENDING.total_seconds() // 60)
    return Conflict(
        ErrorCode.ALREADY_REGISTERED,
        "syncAppId",
        f"This sync app is being registered for this tenant as integration {integration_id} by another "
        "request right now.",
        f"Wait for that request: GET /api/integrations/{integration_id} shows the integration once it is "
        f"stored. If it still answers 404 {minutes} minutes after that request began, that registration "
        "did not finish; send this one again.",
    )


def _covered(covering: Integration, tenant_id: str) -> Conflict:
    return Conflict(
        ErrorCode.ALREADY_REGISTERED,
        "tenantId",
        f"Tenant {tenant_id} is already synced with this sync app by the multi-tenant integration "
        f"{covering.id}.",
        f"Read the tenant through that integration (GET /api/integrations/{covering.id}/tenants). To sync "
        "it as a single tenant instead, register it with a sync app of its own, or remove the multi-tenant "
        f"integration first (DELETE /api/integrations/{covering.id}).",
    )


async def _claim(rt: Runtime, home_tenant_id: str, sync_app_id: str, integration_id: str) -> None:
    """Take the claim on (home tenant, sync app) for `integration_id`, or raise Conflict naming its holder.

    The insert decides between racing registrations: the storage service refuses every insert of the row
    but the first. A claim whose holder is gone (a registration that never finished, or a removed
    integration whose claim was left) is taken over If-Match the ETag it was read with, so of racing
    takeovers one wins too; the others read the claim again and meet the winner."""
    for _ in range(WRITE_ATTEMPTS):
        if await rt.integrations.create_claim(home_tenant_id, sync_app_id, integration_id) is not None:
            return
        claim = await rt.integrations.get_claim(home_tenant_id, sync_app_id)
        if claim is None:
            continue  # released since the insert was refused: insert again
        holder = await rt.integrations.get_integration(claim.integration_id)
        if holder is not None and holder.status != IntegrationStatus.DISABLED:
            raise _duplicate(holder)
        if holder is None and utcnow() - claim.claimed_at < CLAIM_PENDING:
            raise _in_progress(claim.integration_id)
        taken = await rt.integrations.replace_claim_if_unchanged(
            home_tenant_id, sync_app_id, integration_id, claim.etag
        )
        if taken is not None:
            log.info("Registration %s took over the claim left by %s", integration_id, claim.integration_id)
            return
    raise Contended(f"the registration claim of sync app {sync_app_id} in {home_tenant_id} kept changing")


async def _release_claim(rt: Runtime, home_tenant_id: str, sync_app_id: str, integration_id: str) -> None:
    """Best effort: a claim left behind names an integration that is gone or disabled, and the next
    registration of the apps takes it over."""
    try:
        await rt.integrations.release_claim(home_tenant_id, sync_app_id, integration_id)
    except Exception as exc:  # noqa: BLE001  # report; the claim is taken over later
        log.error("Releasing the claim of integration %s failed: %s", integration_id, type(exc).__name__)


async def _live(rt: Runtime, home_tenant_id: str, sync_app_id: str) -> list[Integration]:
    """The live (not disabled) integrations of these apps in this tenant, oldest first."""
    found = [
        i
        for i in await rt.integrations.list_by_sync_app(sync_app_id)
        if i.status != IntegrationStatus.DISABLED and i.home_tenant_id.lower() == home_tenant_id.lower()
    ]
    return sorted(found, key=lambda i: (i.created_at, i.id))


async def _refuse_unclaimed(rt: Runtime, home_tenant_id: str, sync_app_id: str, integration_id: str) -> None:
    """The second line: integrations stored before registrations took claims (or by an older memsync still
    running beside this one during an upgrade) hold none. The oldest live integration of these apps wins;
    when it is not ours, it gets our claim, so the next registration meets the claim, and ours is refused."""
    live = await _live(rt, home_tenant_id, sync_app_id)
    if not live or live[0].id == integration_id:
        return
    oldest = live[0]
    claim = await rt.integrations.get_claim(home_tenant_id, sync_app_id)
    if claim is not None and claim.integration_id == integration_id:
        await rt.integrations.replace_claim_if_unchanged(home_tenant_id, sync_app_id, oldest.id, claim.etag)
    raise _duplicate(oldest)


async def _covering(rt: Runtime, tenant_id: str, sync_app_id: str) -> Integration | None:
    """A live multi-tenant integration that syncs `tenant_id` with this sync app: one of its customers
    (a tenant row under it) that its tenantFilter admits and its last complete discovery still listed."""
    for other in await rt.integrations.list_by_sync_app(sync_app_id):
        if other.kind != IntegrationKind.MULTI_TENANT or other.status == IntegrationStatus.DISABLED:
            continue
        tenant = await rt.tenants.get_tenant(other.id, tenant_id)
        if tenant is not None and tenant.status != TenantStatus.EXCLUDED and tenant.missing_since is None:
            return other
    return None


def _checks_for(rt: Runtime, new: NewIntegration) -> list[AppCheck]:
    home, sync, partner = new.home_tenant_id, new.sync_app, new.partner_app
    if partner is not None:
        return [
            _partner_check(rt, home, partner.app_id, partner.secret),
            _sync_check(
                rt, home, sync.app_id, sync.secret, defender=new.include_defender, tenant_field="partnerTenantId"
            ),
        ]
    return [_sync_check(rt, home, sync.app_id, sync.secret, defender=new.include_defender, tenant_field="tenantId",
                        collect=new.collect)]


async def register(
    rt: Runtime, new: NewIntegration, *, enqueue: Enqueue | None = None, warnings: list[FieldProblem] | None = None
) -> Integration:
    """Try the credentials, store the secrets and the record, queue the first full sync.

    `enqueue` defaults to the sync area's `shared.services.fanout.enqueue_integration`. Optional
    permissions a single tenant's sync app lacks are appended to `warnings` (when given), not refused.
    """
    multi = new.kind == IntegrationKind.MULTI_TENANT
    home, sync_app_id = new.home_tenant_id, new.sync_app.app_id
    integration_id = str(uuid.uuid4())
    # Before anything is stored: of any number of racing registrations of these apps in this tenant, one
    # takes the claim; the others are refused here (docs/data-model.md, registration claims).
    await _claim(rt, home, sync_app_id, integration_id)
    written: list[str] = []
    stored = False
    try:
        await _refuse_unclaimed(rt, home, sync_app_id, integration_id)
        errors = await check_credentials(rt, _checks_for(rt, new), warnings)
        if errors:
            raise CredentialsRejected(errors)
        covering = None if multi else await _covering(rt, home, sync_app_id)
        if covering is not None:
            raise _covered(covering, home)
        apps = [(role, app) for role, app in ((AppRole.PARTNER, new.partner_app), (AppRole.SYNC, new.sync_app))
                if app is not None]
        expiries = await asyncio.gather(*(
            secret_expiry(rt, home, AppCredential(app.app_id, app.secret, app_label(role)), app.expires_on,
                          kind=new.kind)
            for role, app in apps))
        secrets: list[SecretRef] = []
        for (role, app), expiry in zip(apps, expiries, strict=True):
            # Named before the write: a write that fails after the vault stored it (a timeout) is undone too.
            written.append(secret_name(integration_id, role))
            secrets.append(await _write_secret(rt, integration_id, role, app.app_id, app.secret, expiry))
        integration = Integration(
            id=integration_id,
            kind=new.kind,
            display_name=new.display_name or (f"MSP {home}" if multi else f"Tenant {home}"),
            partner_tenant_id=home if multi else None,
            tenant_id=None if multi else home,
            partner_app_id=new.partner_app.app_id if new.partner_app is not None else None,
            sync_app_id=new.sync_app.app_id,
            include_defender=new.include_defender,
            collect=new.collect,
            tenant_filter=new.tenant_filter if multi else TenantFilter(),
            secrets=secrets,
            created_at=utcnow(),
            # GDAP (docs/gdap.md): recorded now; the consents run once a partner admin has signed in.
            auto_consent=multi and new.auto_consent,
        )
        await rt.integrations.create_integration(integration)
        stored = True
        await _refuse_unclaimed(rt, home, sync_app_id, integration_id)
        await _enqueue_first_sync(rt, integration, enqueue)
    except BaseException:
        # Refused, or failed half-way: undone, and the claim released so the admin can register again.
        await _undo_registration(rt, integration_id, written, stored)
        await _release_claim(rt, home, sync_app_id, integration_id)
        raise
    return integration


async def _enqueue_first_sync(rt: Runtime, integration: Integration, enqueue: Enqueue | None) -> None:
    try:
        await (enqueue or enqueue_integration)(rt, integration, "registration")
    except ActionableError as exc:
        # Discovery met something a person must fix (e.g. Partner Center refused the partner app).
        if not exc.retriable:
            field = "partnerAppId" if integration.kind == IntegrationKind.MULTI_TENANT else "syncAppId"
            raise CredentialsRejected([credential_problem(exc, field)]) from None
        raise ServiceUnavailable.of(exc) from None


async def _undo_registration(rt: Runtime, integration_id: str, written: list[str], stored: bool) -> None:
    """Best effort, each step on its own: one failing must not keep the others from running."""
    steps = [rt.secrets.delete_secret(name) for name in written]
    if stored:
        steps += [
            rt.tenants.delete_tenants(integration_id),
            rt.integrations.delete_integration(integration_id),
        ]
    results = await asyncio.gather(*steps, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            log.error(
                "Undoing registration %s left something behind: %s", integration_id, type(result).__name__
            )


# --- rotation ---------------------------------------------------------------------------------------


def _rotation_problems(integration: Integration, body: NewSecrets) -> list[FieldProblem]:
    problems: list[FieldProblem] = []
    single = integration.kind == IntegrationKind.SINGLE_TENANT
    if single and (body.partner_app_secret is not None or body.partner_app_secret_expires_on is not None):
        field = "partnerAppSecret" if body.partner_app_secret is not None else "partnerAppSecretExpiresOn"
        problems.append(
            FieldProblem(
                field,
                ErrorCode.NOT_APPLICABLE,
                f"{field} does not apply to a single-tenant integration",
                "Send syncAppSecret only; a single-tenant integration has no partner app.",
            )
        )
    for role in ("partnerApp", "syncApp"):
        secret = getattr(body, f"{_snake(role)}_secret")
        expires = getattr(body, f"{_snake(role)}_secret_expires_on")
        if expires is not None and secret is None:
            problems.append(
                FieldProblem(
                    f"{role}SecretExpiresOn",
                    ErrorCode.REQUIRES_SECRET,
                    f"{role}SecretExpiresOn is only accepted with a new {role}Secret",
                    f"Send {role}Secret together with its expiry date.",
                )
            )
    if body.partner_app_secret is None and body.sync_app_secret is None and not problems:
        problems.append(
            FieldProblem(
                "body",
                ErrorCode.REQUIRED,
                "the body names no new secret",
                "Send partnerAppSecret and/or syncAppSecret (with optional *ExpiresOn).",
            )
        )
    return problems


def _snake(camel: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in camel)


def _disabled(integration: Integration, verb: str) -> Conflict:
    return Conflict(
        ErrorCode.INTEGRATION_DISABLED,
        "id",
        f"Integration {integration.id} was removed (status disabled); it cannot {verb}.",
        "Register the apps again with POST /api/integrations.",
    )


async def rotate_secrets(rt: Runtime, integration_id: str, body: NewSecrets) -> Integration:
    """Replace secrets with new values that were tried first; a rotation that fails changes nothing."""
    integration = await load_integration(rt, integration_id)
    if integration.status == IntegrationStatus.DISABLED:
        raise _disabled(integration, "take new secrets")
    problems = _rotation_problems(integration, body)
    if problems:
        raise InvalidInput(problems)

    new: list[tuple[AppRole, str, SecretStr, datetime | None]] = []
    checks: list[AppCheck] = []
    home = integration.home_tenant_id
    tenant_field = "partnerTenantId" if integration.kind == IntegrationKind.MULTI_TENANT else "tenantId"
    if body.partner_app_secret is not None and integration.partner_app_id:
        new.append(
            (
                AppRole.PARTNER,
                integration.partner_app_id,
                body.partner_app_secret,
                body.partner_app_secret_expires_on,
            )
        )
        checks.append(_partner_check(rt, home, integration.partner_app_id, body.partner_app_secret))
    if body.sync_app_secret is not None:
        new.append(
            (AppRole.SYNC, integration.sync_app_id, body.sync_app_secret, body.sync_app_secret_expires_on)
        )
        checks.append(
            _sync_check(
                rt,
                home,
                integration.sync_app_id,
                body.sync_app_secret,
                defender=integration.include_defender,
                tenant_field=tenant_field,
                collect=integration.collect,
            )
        )
    errors = await check_credentials(rt, checks)
    if errors:
        raise CredentialsRejected(errors)

    # The new secrets' dates, read from Graph now rather than at the next expiry check.
    expiries = await asyncio.gather(*(
        secret_expiry(rt, home, AppCredential(app_id, value, app_label(role)), given, kind=integration.kind)
        for role, app_id, value, given in new))
    previous = {role: await _current_value(rt, integration, role) for role, _, _, _ in new}
    written: dict[AppRole, SecretRef] = {}
    try:
        for (role, app_id, value, _), expiry in zip(new, expiries, strict=True):
            written[role] = await _write_secret(rt, integration.id, role, app_id, value, expiry)
        updated = await update_integration(rt, integration.id, lambda current: _rekeyed(current, written))
    except SecretDeleted as exc:
        await _restore_secrets(rt, integration, previous)
        raise await _secret_deleted(rt, integration, exc.name) from None
    except BaseException:
        await _restore_secrets(rt, integration, previous)
        raise
    for role in written:
        await _resolve_alerts(rt, updated, role)
    return updated


async def _secret_deleted(rt: Runtime, integration: Integration, name: str) -> NotFound | Conflict:
    """Key Vault refused a new version of `name` because it is deleted and not purged (soft delete): the
    integration was removed while it was being rotated (the usual case), or the secret deleted by hand."""
    current = await rt.integrations.get_integration(integration.id)
    if current is None:
        return NotFound("integration", "id", "List the integrations with GET /api/integrations.")
    if current.status == IntegrationStatus.DISABLED:
        return _disabled(current, "take new secrets")
    role = next((r for r in AppRole if secret_name(integration.id, r) == name), AppRole.SYNC)
    return Conflict(
        ErrorCode.SECRET_DELETED,
        "partnerAppSecret" if role is AppRole.PARTNER else "syncAppSecret",
        f"The Key Vault secret {name} of integration {integration.id} is deleted but not purged, so it cannot "
        "take a new version; nothing was changed.",
        f"Recover {name} in the vault (Secrets > Manage deleted secrets > Recover), then send the rotation "
        f"again; or remove the integration (DELETE /api/integrations/{integration.id}) and register the apps "
        "again.",
    )


def _rekeyed(current: Integration, written: dict[AppRole, SecretRef]) -> Integration:
    refs = {s.role: s for s in current.secrets} | written
    updated = current.model_copy(update={"secrets": [refs[r] for r in AppRole if r in refs]})
    if updated.status == IntegrationStatus.ERROR and (
        updated.error is None or updated.error.code in {c.value for c in _CREDENTIAL_CODES}
    ):
        # The error was about a secret; the new one was just proven to work.
        updated = updated.model_copy(update={"status": IntegrationStatus.ACTIVE, "error": None})
    return updated


async def update_integration(
    rt: Runtime, integration_id: str, change: Callable[[Integration], Integration]
) -> Integration:
    """`rt.integrations.update` (the sync and the expiry timer mark integrations too); NotFound when the
    integration is gone."""
    updated = await rt.integrations.update(integration_id, change)
    if updated is None:
        raise NotFound("integration", "id", "List the integrations with GET /api/integrations.")
    return updated


async def _current_value(rt: Runtime, integration: Integration, role: AppRole) -> SecretStr | None:
    """The value in use, kept in memory only to put it back if the rotation fails half-way."""
    ref = integration.secret(role)
    if ref is None:
        return None
    try:
        return await rt.secrets.get_secret(ref.name)
    except sdk.ResourceNotFoundError:
        return None


async def _restore_secrets(
    rt: Runtime, integration: Integration, previous: dict[AppRole, SecretStr | None]
) -> None:
    """Put the old values back as the current versions (a vault version cannot be deleted)."""
    for role, value in previous.items():
        ref = integration.secret(role)
        if ref is None or value is None:
            continue
        try:
            await rt.secrets.set_secret(
                ref.name,
                value,
                expires_on=ref.expires_on if ref.expires_on_source in ("given", "graph") else None,
                tags={"integrationId": integration.id, "role": role.value, "appId": ref.app_id},
            )
        except Exception as exc:  # noqa: BLE001  # report, keep restoring the other secret
            log.error(
                "Restoring the %s secret of integration %s failed: %s",
                role.value,
                integration.id,
                type(exc).__name__,
            )


async def _resolve_alerts(rt: Runtime, integration: Integration, role: AppRole) -> None:
    try:
        await resolve_secret_alerts(rt, integration, role)
    except Exception as exc:  # noqa: BLE001  # the rotation succeeded; a stale alert must not undo it
        log.warning(
            "Resolving secret alerts of integration %s failed: %s", integration.id, type(exc).__name__
        )


async def _resolve_open_alerts(rt: Runtime, integration_id: str) -> None:
    try:
        await resolve_integration_alerts(rt, integration_id)
    except Exception as exc:  # noqa: BLE001  # the removal succeeded; the next expiry check resolves them
        log.warning("Resolving the alerts of removed integration %s failed: %s", integration_id,
                    type(exc).__name__)


# --- sync on demand and removal ---------------------------------------------------------------------


async def request_sync(rt: Runtime, integration_id: str, tenant_ids: list[str] | None) -> int:
    """Queue a manual sync of every tenant, or of the named ones (which must belong to the integration)."""
    integration = await load_integration(rt, integration_id)
    if integration.status == IntegrationStatus.DISABLED:
        raise _disabled(integration, "sync")
    if tenant_ids:
        known = {t.tenant_id.lower() for t in await rt.tenants.list_tenants(integration.id)}
        if integration.tenant_id:
            known.add(integration.tenant_id.lower())
        unknown = [
            FieldProblem(
                f"tenantIds[{i}]",
                ErrorCode.NOT_FOUND,
                f"tenantIds[{i}] is not a tenant of this integration",
                FIELD_HINTS["tenantIds"],
            )
            for i, tid in enumerate(tenant_ids)
            if tid not in known
        ]
        if unknown:
            raise NotFound(
                "tenant of this integration",
                "tenantIds",
                FIELD_HINTS["tenantIds"],
                problems=unknown,
                message="Some tenants are not part of this integration.",
            )
    queued: int = await enqueue_integration(rt, integration, "manual", tenant_ids=tenant_ids, waiting=True)
    return queued


async def remove_integration(rt: Runtime, integration_id: str, *, purge_assets: bool) -> None:
    """Stop syncing (status disabled), delete the vault secrets; with `purge_assets`, delete everything."""
    # Disabled first: a scheduled sync that starts now must already skip it.
    integration = await update_integration(
        rt, integration_id, lambda current: current.model_copy(update={"status": IntegrationStatus.DISABLED})
    )
    # The apps may be registered again from now on.
    await _release_claim(rt, integration.home_tenant_id, integration.sync_app_id, integration.id)
    names = {s.name for s in integration.secrets} | {secret_name(integration.id, role) for role in AppRole}
    await asyncio.gather(*(rt.secrets.delete_secret(name) for name in sorted(names)))
    await update_integration(rt, integration_id, lambda current: current.model_copy(update={"secrets": []}))
    await _resolve_open_alerts(rt, integration.id)
    if purge_assets:
        await AssetStore(rt.tables).delete_assets(integration.id)
        await rt.tenants.delete_tenants(integration.id)
        await rt.integrations.delete_integration(integration.id)


__all__ = ["check_credentials", "register", "remove_integration", "request_sync", "rotate_secrets"]
