"""The partner admin's one sign-in: Entra's device code flow for the partner app, with Partner Center's
delegated `user_impersonation` scope and `offline_access`.

`start_signin` asks Entra for a device code and returns the user code and verification page; the device
code itself waits in Key Vault (it is a credential while the sign-in is pending), its state on the
integration record in Table Storage. `poll_signin` (each GET) redeems it at most once per `interval`
(a claim under the record's ETag keeps two GETs from polling at once, and `slow_down` widens the
interval). When the admin has signed in, the refresh token goes to Key Vault as
`secret_name(id, AppRole.PARTNER_SIGNIN)` with its 90-day sliding end as the version's expiry, which the
expiry timer watches; with `autoConsent` the consents run right then.

`delegated_partner_token` redeems the refresh token for a Partner Center access token and stores the new
refresh token Entra returns as a new vault version: every use renews the 90 days.
https://learn.microsoft.com/entra/identity-platform/v2-oauth2-device-code
https://learn.microsoft.com/entra/identity-platform/refresh-tokens
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from shared.api.problems import ApiProblem, FieldError, conflict, service_unavailable
from shared.clients.keyvault import SECRET_PREFIX, secret_name
from shared.clients.partner_center import (
    DelegatedGrants,
    DelegatedToken,
    EntraGrantError,
    user_impersonation_scope,
)
from shared.errors import ActionableError
from shared.models import (
    AppRole,
    ErrorModel,
    Integration,
    IntegrationKind,
    IntegrationStatus,
    PartnerSignin,
    SecretRef,
)
from shared.services.queries import load_integration
from shared.stores.tables import utcnow

if TYPE_CHECKING:
    from shared.runtime import Runtime

log = logging.getLogger(__name__)

REFRESH_LIFETIME = timedelta(days=90)  # Entra's refresh token lifetime, sliding with each use
SLOW_DOWN_SECONDS = 5  # RFC 8628 section 3.5
_WRITE_ATTEMPTS = 5
# AADSTS codes of a refresh token that no longer works: expired by inactivity or age, revoked, or the
# user's sessions were revoked / password changed.
EXPIRED_REFRESH_CODES = frozenset({70008, 700082, 700084, 50173, 50133, 700081})


def device_secret_name(integration_id: str) -> str:
    return f"{SECRET_PREFIX}{integration_id}-partner-signin-device"


@dataclass
class SigninOutcome:
    integration: Integration
    consents: list[dict[str, Any]] = field(default_factory=list)  # autoConsent results, when run


def _multi_tenant(integration: Integration, verb: str) -> None:
    if integration.status == IntegrationStatus.DISABLED:
        raise conflict("integrationDisabled", "id",
                       f"Integration {integration.id} was removed (status disabled); it cannot {verb}.",
                       "Register the apps again with POST /api/integrations.")
    if integration.kind != IntegrationKind.MULTI_TENANT or not integration.partner_app_id:
        raise conflict("notMultiTenant", "id",
                       f"Integration {integration.id} is single-tenant; partner sign-in and Partner Center "
                       "consent apply to multi-tenant (partner) integrations only.",
                       "Grant admin consent to the sync app in the tenant itself (Enterprise applications).")


async def _grants(rt: Runtime, integration: Integration) -> DelegatedGrants:
    from shared.services.credentials import app_credential

    try:
        app = await app_credential(rt, integration, AppRole.PARTNER)
    except ActionableError as exc:
        raise service_unavailable(exc) from None
    return DelegatedGrants(
        rt.http, authority_host=rt.settings.authority_host, tenant_id=integration.home_tenant_id,
        client_id=app.app_id, client_secret=app.secret,
        scope=user_impersonation_scope(rt.settings.cloud.partner_center_scope),
    )


def _grant_error(exc: EntraGrantError, what: str) -> ErrorModel:
    code = f"AADSTS{exc.codes[0]}" if exc.codes else exc.error
    return ErrorModel(
        code="signinFailed",
        message=f"Entra ID refused the {what} ({code}: {exc.error}).",
        action=f"Look up {code} at https://login.microsoft.com/error?code={exc.codes[0] if exc.codes else ''}; "
        "check that the partner app allows the device code flow (Authentication > Allow public client "
        "flows) and has the delegated Partner Center permission user_impersonation with admin consent, "
        "then start the sign-in again.",
    )


async def _change(rt: Runtime, integration_id: str, change: Any, *, etag: str | None = None) -> Integration | None:
    """Write `change(current)` under the record's ETag; with `etag`, only if the record is still that
    version (a claim), else retried on conflicts. None when the claim was lost."""
    for _ in range(_WRITE_ATTEMPTS):
        found = await rt.integrations.get_integration_with_etag(integration_id)
        if found is None:
            return None
        current, current_etag = found
        if etag is not None and current_etag != etag:
            return None
        updated: Integration = change(current)
        if await rt.integrations.replace_integration_if_unchanged(updated, current_etag):
            return updated
        if etag is not None:
            return None
    raise RuntimeError(f"integration {integration_id} kept changing")


async def start_signin(rt: Runtime, integration_id: str) -> Integration:
    """Ask Entra for a device code; the integration's `partnerSignin` then holds the user code."""
    integration = await load_integration(rt, integration_id)
    _multi_tenant(integration, "sign in")
    grants = await _grants(rt, integration)
    try:
        code = await grants.start_device_code()
    except EntraGrantError as exc:
        error = _grant_error(exc, "device code request")
        raise ApiProblem(422, "The sign-in could not start", error.message,
                         [FieldError("partnerAppId", error.code, error.message, error.action)],
                         "signin-failed") from None
    now = utcnow()
    expires = now + timedelta(seconds=code.expires_in)
    await rt.secrets.set_secret(device_secret_name(integration.id), code.device_code, expires_on=expires,
                                tags={"integrationId": integration.id, "role": "partnerSigninDevice"})
    state = PartnerSignin(
        status="pending", started_at=now, user_code=code.user_code, verification_uri=code.verification_uri,
        message=code.message, expires_at=expires, interval=code.interval,
        next_poll_at=now + timedelta(seconds=code.interval),
    )
    keep = integration.partner_signin if integration.partner_signin and integration.partner_signin.status == "done" \
        else None

    def pending(current: Integration) -> Integration:
        # A sign-in that is already done stays usable until the new one completes.
        return current.model_copy(update={"partner_signin": state.model_copy(update={
            "signed_in_at": keep.signed_in_at if keep else None,
            "signed_in_as": keep.signed_in_as if keep else None,
            "refresh_expires_on": keep.refresh_expires_on if keep else None})})

    updated = await _change(rt, integration.id, pending)
    log.info("integration %s: partner sign-in started (device code expires %s)", integration.id, expires)
    return updated or integration


async def poll_signin(rt: Runtime, integration_id: str) -> SigninOutcome:
    """Report the sign-in; while it is pending and its interval has passed, poll Entra once."""
    integration = await load_integration(rt, integration_id)
    state = integration.partner_signin
    if state is None or state.status != "pending":
        return SigninOutcome(integration)
    now = utcnow()
    if state.expires_at is not None and now >= state.expires_at:
        return SigninOutcome(await _finish_failed(rt, integration, ErrorModel(
            code="signinExpired", message="The device code expired before the admin signed in.",
            action=f"Start again with POST /api/integrations/{integration.id}/partner-signin and enter the new "
            "code within 15 minutes.")))
    if state.next_poll_at is not None and now < state.next_poll_at:
        return SigninOutcome(integration)
    found = await rt.integrations.get_integration_with_etag(integration.id)
    if found is None:
        return SigninOutcome(integration)
    claimed = await _change(rt, integration.id, lambda c: _next_poll(c, now), etag=found[1])
    if claimed is None:  # another request is polling right now
        return SigninOutcome(await load_integration(rt, integration.id))
    grants = await _grants(rt, claimed)
    from azure.core.exceptions import ResourceNotFoundError

    try:
        device_code = await rt.secrets.get_secret(device_secret_name(integration.id))
    except ResourceNotFoundError:
        return SigninOutcome(await _finish_failed(rt, claimed, ErrorModel(
            code="signinExpired", message="The pending sign-in's device code is gone from Key Vault.",
            action=f"Start again with POST /api/integrations/{integration.id}/partner-signin.")))
    try:
        token = await grants.redeem_device_code(device_code)
    except EntraGrantError as exc:
        if exc.error == "authorization_pending":
            return SigninOutcome(claimed)
        if exc.error == "slow_down":
            slower = await _change(rt, integration.id, lambda c: _slower(c))
            return SigninOutcome(slower or claimed)
        if exc.error in ("expired_token", "code_expired"):
            error = ErrorModel(code="signinExpired", message="The device code expired before the admin signed in.",
                               action=f"Start again with POST /api/integrations/{integration.id}/partner-signin.")
        elif exc.error in ("access_denied", "authorization_declined"):
            error = ErrorModel(code="signinDeclined", message="The admin declined the sign-in.",
                               action=f"Start again with POST /api/integrations/{integration.id}/partner-signin "
                               "and accept the permissions asked for.")
        else:
            error = _grant_error(exc, "device code redemption")
        return SigninOutcome(await _finish_failed(rt, claimed, error))
    if token.refresh_token is None:
        return SigninOutcome(await _finish_failed(rt, claimed, ErrorModel(
            code="signinFailed", message="Entra ID issued no refresh token (offline_access was not granted).",
            action="Grant the partner app offline_access (or admin consent for its delegated permissions), then "
            f"start again with POST /api/integrations/{integration.id}/partner-signin.")))
    done = await _store_refresh_token(rt, claimed, token, signed_in=True)
    await rt.secrets.delete_secret(device_secret_name(integration.id))
    await _resolve_signin_alerts(rt, done)
    log.info("integration %s: partner admin signed in", integration.id)
    outcome = SigninOutcome(done)
    if done.auto_consent:
        from shared.services.consent import consent_all

        outcome.consents = await consent_all(rt, done.id, token=token.access_token)
    return outcome


def _next_poll(current: Integration, now: Any) -> Integration:
    state = current.partner_signin
    assert state is not None
    return current.model_copy(update={"partner_signin": state.model_copy(
        update={"next_poll_at": now + timedelta(seconds=state.interval)})})


def _slower(current: Integration) -> Integration:
    state = current.partner_signin
    if state is None:
        return current
    interval = state.interval + SLOW_DOWN_SECONDS
    return current.model_copy(update={"partner_signin": state.model_copy(
        update={"interval": interval, "next_poll_at": utcnow() + timedelta(seconds=interval)})})


async def _finish_failed(rt: Runtime, integration: Integration, error: ErrorModel) -> Integration:
    await rt.secrets.delete_secret(device_secret_name(integration.id))
    log.warning("integration %s: partner sign-in failed: %s", integration.id, error.code)

    def failed(current: Integration) -> Integration:
        state = current.partner_signin or PartnerSignin(status="failed", started_at=utcnow())
        return current.model_copy(update={"partner_signin": state.model_copy(update={
            "status": "failed", "error": error, "user_code": None, "next_poll_at": None})})

    return await _change(rt, integration.id, failed) or integration


async def _store_refresh_token(
    rt: Runtime, integration: Integration, token: DelegatedToken, *, signed_in: bool
) -> Integration:
    """The refresh token as a new vault version (expiry: 90 days from now), and its SecretRef."""
    assert token.refresh_token is not None
    now = utcnow()
    expires = now + REFRESH_LIFETIME
    name = secret_name(integration.id, AppRole.PARTNER_SIGNIN)
    app_id = integration.partner_app_id or ""
    version = await rt.secrets.set_secret(
        name, token.refresh_token, expires_on=expires,
        tags={"integrationId": integration.id, "role": AppRole.PARTNER_SIGNIN.value, "appId": app_id},
    )
    ref = SecretRef(name=name, role=AppRole.PARTNER_SIGNIN, app_id=app_id, expires_on=expires,
                    expires_on_source="assumed", version=version)
    claims = token.claims
    who = claims.get("upn") or claims.get("preferred_username") or claims.get("unique_name")

    def stored(current: Integration) -> Integration:
        secrets = [s for s in current.secrets if s.role != AppRole.PARTNER_SIGNIN] + [ref]
        state = current.partner_signin or PartnerSignin(status="done", started_at=now)
        update: dict[str, Any] = {"status": "done", "refresh_expires_on": expires, "error": None,
                                  "user_code": None, "next_poll_at": None, "expires_at": None}
        if signed_in:
            update |= {"signed_in_at": now, "signed_in_as": who if isinstance(who, str) else None}
        return current.model_copy(update={"secrets": secrets, "partner_signin": state.model_copy(update=update)})

    return await _change(rt, integration.id, stored) or integration


async def _resolve_signin_alerts(rt: Runtime, integration: Integration) -> None:
    try:
        from shared.services.alerting import resolve_secret_alerts

        await resolve_secret_alerts(rt, integration, AppRole.PARTNER_SIGNIN)
    except Exception as exc:  # noqa: BLE001  # the sign-in worked; a stale alert must not undo it
        log.warning("integration %s: resolving sign-in alerts failed (%s)", integration.id, type(exc).__name__)


def sign_in_first(integration: Integration) -> ApiProblem:
    return conflict(
        "signInRequired", "partnerSignin",
        f"No partner admin has signed in for integration {integration.id}; Partner Center's application "
        "consent needs a partner admin's delegated token.",
        f"Sign in once: POST /api/integrations/{integration.id}/partner-signin, open the verification page "
        f"it returns, enter the code, then poll GET /api/integrations/{integration.id}/partner-signin until "
        "it says done.",
    )


async def delegated_partner_token(rt: Runtime, integration: Integration) -> SecretStr:
    """A Partner Center access token of the signed-in partner admin; renews the stored refresh token.

    Raises ApiProblem 409 `signInRequired` without a sign-in, and `signInExpired` when Entra refuses the
    refresh token (the sign-in is then marked expired)."""
    from azure.core.exceptions import ResourceNotFoundError

    _multi_tenant(integration, "consent")
    ref = integration.secret(AppRole.PARTNER_SIGNIN)
    if ref is None:
        raise sign_in_first(integration)
    try:
        refresh = await rt.secrets.get_secret(ref.name)
    except ResourceNotFoundError:
        raise sign_in_first(integration) from None
    grants = await _grants(rt, integration)
    try:
        token = await grants.refresh(refresh)
    except EntraGrantError as exc:
        expired = exc.error == "invalid_grant" or bool(EXPIRED_REFRESH_CODES & set(exc.codes))
        code = f"AADSTS{exc.codes[0]}" if exc.codes else exc.error
        if not expired:
            error = _grant_error(exc, "partner admin's refresh token")
            raise ApiProblem(502, "Entra ID refused the partner admin's token", error.message,
                             [FieldError("partnerSignin", error.code, error.message, error.action)],
                             "signin-failed") from None
        error = ErrorModel(
            code="signInExpired",
            message=f"The partner admin's sign-in of integration {integration.id} no longer works ({code}): "
            "the refresh token expired (90 days unused) or was revoked.",
            action=f"Sign in again: POST /api/integrations/{integration.id}/partner-signin, then retry.",
        )

        def lapsed(current: Integration) -> Integration:
            state = current.partner_signin or PartnerSignin(status="expired", started_at=utcnow())
            return current.model_copy(update={"partner_signin": state.model_copy(
                update={"status": "expired", "error": error})})

        await _change(rt, integration.id, lapsed)
        log.warning("integration %s: partner admin refresh token refused (%s)", integration.id, code)
        raise ApiProblem(409, "Conflict", error.message,
                         [FieldError("partnerSignin", error.code, error.message, error.action)],
                         "conflict") from None
    if token.refresh_token is not None:
        await _store_refresh_token(rt, integration, token, signed_in=False)
    return token.access_token


__all__ = ["delegated_partner_token", "poll_signin", "start_signin"]
