"""The partner admin's one sign-in: Entra's device code flow for the partner app, with Partner Center's
delegated `user_impersonation` scope and `offline_access`.

`start_signin` asks Entra for a device code and returns the user code and verification page; the device
code itself waits in Key Vault (it is a credential while the sign-in is pending), its state on the
integration record in Table Storage. `poll_signin` (each GET) redeems it at most once per `interval`
(a claim under the record's ETag keeps two GETs from polling at once, and `slow_down` widens the
interval). When the admin has signed in, the refresh token goes to Key Vault as
`secret_name(id, AppRole.PARTNER_SIGNIN)` with its 90-day sliding end as the version's expiry, which the
expiry timer watches; with `autoConsent` the consents run right then.

Redeeming the stored refresh token for Partner Center (each consent) is `shared.services.partner_admin`.
https://learn.microsoft.com/entra/identity-platform/v2-oauth2-device-code
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from shared import sdk
from shared.clients.keyvault import SECRET_PREFIX
from shared.clients.partner_center import EntraGrantError
from shared.errors import ErrorCode, ErrorInfo, SigninNotStarted
from shared.models import AppRole, ErrorModel, Integration, PartnerSignin
from shared.services.alerting import resolve_secret_alerts
from shared.services.consent import ConsentResult, consent_all
from shared.services.partner_admin import (
    Claimed,
    change_integration,
    delegated_grants,
    grant_error,
    require_multi_tenant,
    store_refresh_token,
)
from shared.services.queries import load_integration
from shared.stores.tables import utcnow

if TYPE_CHECKING:
    from shared.runtime import Runtime

log = logging.getLogger(__name__)

SLOW_DOWN_SECONDS = 5  # RFC 8628 section 3.5


def device_secret_name(integration_id: str) -> str:
    return f"{SECRET_PREFIX}{integration_id}-partner-signin-device"


@dataclass
class SigninOutcome:
    integration: Integration
    consents: list[ConsentResult] = field(default_factory=list)  # autoConsent results, when run


async def start_signin(rt: Runtime, integration_id: str) -> Integration:
    """Ask Entra for a device code; the integration's `partnerSignin` then holds the user code."""
    integration = await load_integration(rt, integration_id)
    require_multi_tenant(integration, "sign in")
    grants = await delegated_grants(rt, integration)
    try:
        code = await grants.start_device_code()
    except EntraGrantError as exc:
        raise SigninNotStarted(grant_error(exc, "device code request"), "partnerAppId") from None
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

    updated = await change_integration(rt, integration.id, pending)
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
        return SigninOutcome(await _finish_failed(rt, integration, ErrorInfo(
            ErrorCode.SIGNIN_EXPIRED, "The device code expired before the admin signed in.",
            f"Start again with POST /api/integrations/{integration.id}/partner-signin and enter the new "
            "code within 15 minutes.")))
    if state.next_poll_at is not None and now < state.next_poll_at:
        return SigninOutcome(integration)
    claimed = await change_integration(rt, integration.id, lambda c: _next_poll(c, now))
    if claimed is None:  # another request is polling right now
        return SigninOutcome(await load_integration(rt, integration.id))
    grants = await delegated_grants(rt, claimed)

    try:
        device_code = await rt.secrets.get_secret(device_secret_name(integration.id))
    except sdk.ResourceNotFoundError:
        return SigninOutcome(await _finish_failed(rt, claimed, ErrorInfo(
            ErrorCode.SIGNIN_EXPIRED, "The pending sign-in's device code is gone from Key Vault.",
            f"Start again with POST /api/integrations/{integration.id}/partner-signin.")))
    try:
        token = await grants.redeem_device_code(device_code)
    except EntraGrantError as exc:
        if exc.error == "authorization_pending":
            return SigninOutcome(claimed)
        if exc.error == "slow_down":
            slower = await change_integration(rt, integration.id, lambda c: _slower(c))
            return SigninOutcome(slower or claimed)
        if exc.error in ("expired_token", "code_expired"):
            error = ErrorInfo(ErrorCode.SIGNIN_EXPIRED, "The device code expired before the admin signed in.",
                              f"Start again with POST /api/integrations/{integration.id}/partner-signin.")
        elif exc.error in ("access_denied", "authorization_declined"):
            error = ErrorInfo(ErrorCode.SIGNIN_DECLINED, "The admin declined the sign-in.",
                              f"Start again with POST /api/integrations/{integration.id}/partner-signin "
                              "and accept the permissions asked for.")
        else:
            error = grant_error(exc, "device code redemption")
        return SigninOutcome(await _finish_failed(rt, claimed, error))
    if token.refresh_token is None:
        return SigninOutcome(await _finish_failed(rt, claimed, ErrorInfo(
            ErrorCode.SIGNIN_FAILED, "Entra ID issued no refresh token (offline_access was not granted).",
            "Grant the partner app offline_access (or admin consent for its delegated permissions), then "
            f"start again with POST /api/integrations/{integration.id}/partner-signin.")))
    done = await store_refresh_token(rt, claimed, token, signed_in=True)
    await rt.secrets.delete_secret(device_secret_name(integration.id))
    await _resolve_signin_alerts(rt, done)
    log.info("integration %s: partner admin signed in", integration.id)
    outcome = SigninOutcome(done)
    if done.auto_consent:
        outcome.consents = await consent_all(rt, done.id, token=token.access_token)
    return outcome


def _next_poll(current: Integration, now: Any) -> Integration:
    """This request's claim of the next poll; `Claimed` when the sign-in is no longer pending or another
    request claimed the poll since this one read the record."""
    state = current.partner_signin
    if state is None or state.status != "pending" or (state.next_poll_at is not None and now < state.next_poll_at):
        raise Claimed("another request is polling, or the sign-in ended")
    return current.model_copy(update={"partner_signin": state.model_copy(
        update={"next_poll_at": now + timedelta(seconds=state.interval)})})


def _slower(current: Integration) -> Integration:
    state = current.partner_signin
    if state is None:
        return current
    interval = state.interval + SLOW_DOWN_SECONDS
    return current.model_copy(update={"partner_signin": state.model_copy(
        update={"interval": interval, "next_poll_at": utcnow() + timedelta(seconds=interval)})})


async def _finish_failed(rt: Runtime, integration: Integration, error: ErrorInfo) -> Integration:
    await rt.secrets.delete_secret(device_secret_name(integration.id))
    log.warning("integration %s: partner sign-in failed: %s", integration.id, error.code)

    def failed(current: Integration) -> Integration:
        state = current.partner_signin or PartnerSignin(status="failed", started_at=utcnow())
        return current.model_copy(update={"partner_signin": state.model_copy(update={
            "status": "failed", "error": ErrorModel.of(error), "user_code": None, "next_poll_at": None})})

    return await change_integration(rt, integration.id, failed) or integration


async def _resolve_signin_alerts(rt: Runtime, integration: Integration) -> None:
    try:
        await resolve_secret_alerts(rt, integration, AppRole.PARTNER_SIGNIN)
    except Exception as exc:  # noqa: BLE001  # the sign-in worked; a stale alert must not undo it
        log.warning("integration %s: resolving sign-in alerts failed (%s)", integration.id, type(exc).__name__)


__all__ = ["poll_signin", "start_signin"]
