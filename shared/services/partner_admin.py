"""The signed-in partner admin's delegated access to Partner Center: the refresh token the sign-in stored,
redeemed for an access token and renewed with each use.

The sign-in itself (`shared.services.partner_signin`) and the consents (`shared.services.consent`) both
build on this: the sign-in stores the first refresh token, a consent redeems it. Entra returns a new
refresh token with every access token; it goes to Key Vault as a new version, which renews the 90 days.
https://learn.microsoft.com/entra/identity-platform/refresh-tokens
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from shared import sdk
from shared.clients.keyvault import secret_name
from shared.clients.partner_center import (
    DelegatedGrants,
    DelegatedToken,
    EntraGrantError,
    user_impersonation_scope,
)
from shared.errors import (
    ActionableError,
    Conflict,
    ErrorCode,
    ErrorInfo,
    PartnerTokenRefused,
    ServiceUnavailable,
)
from shared.models import (
    AppRole,
    ErrorModel,
    Integration,
    IntegrationKind,
    IntegrationStatus,
    PartnerSignin,
    SecretRef,
)
from shared.services.credentials import app_credential
from shared.stores.tables import utcnow

if TYPE_CHECKING:
    from shared.runtime import Runtime

log = logging.getLogger(__name__)

REFRESH_LIFETIME = timedelta(days=90)  # Entra's refresh token lifetime, sliding with each use
# AADSTS codes of a refresh token that no longer works: expired by inactivity or age, revoked, or the
# user's sessions were revoked / password changed.
EXPIRED_REFRESH_CODES = frozenset({70008, 700082, 700084, 50173, 50133, 700081})


def require_multi_tenant(integration: Integration, verb: str) -> None:
    """Partner sign-in and consent apply to live multi-tenant integrations only; `Conflict` otherwise."""
    if integration.status == IntegrationStatus.DISABLED:
        raise Conflict(ErrorCode.INTEGRATION_DISABLED, "id",
                       f"Integration {integration.id} was removed (status disabled); it cannot {verb}.",
                       "Register the apps again with POST /api/integrations.")
    if integration.kind != IntegrationKind.MULTI_TENANT or not integration.partner_app_id:
        raise Conflict(ErrorCode.NOT_MULTI_TENANT, "id",
                       f"Integration {integration.id} is single-tenant; partner sign-in and Partner Center "
                       "consent apply to multi-tenant (partner) integrations only.",
                       "Grant admin consent to the sync app in the tenant itself (Enterprise applications).")


async def delegated_grants(rt: Runtime, integration: Integration) -> DelegatedGrants:
    """Entra's delegated grants (device code, refresh) as the partner app, for Partner Center."""
    try:
        app = await app_credential(rt, integration, AppRole.PARTNER)
    except ActionableError as exc:
        raise ServiceUnavailable.of(exc) from None
    return DelegatedGrants(
        rt.http, authority_host=rt.settings.authority_host, tenant_id=integration.home_tenant_id,
        client_id=app.app_id, client_secret=app.secret,
        scope=user_impersonation_scope(rt.settings.cloud.partner_center_scope),
    )


def grant_error(exc: EntraGrantError, what: str) -> ErrorInfo:
    code = f"AADSTS{exc.codes[0]}" if exc.codes else exc.error
    return ErrorInfo(
        ErrorCode.SIGNIN_FAILED,
        f"Entra ID refused the {what} ({code}: {exc.error}).",
        f"Look up {code} at https://login.microsoft.com/error?code={exc.codes[0] if exc.codes else ''}; "
        "check that the partner app allows the device code flow (Authentication > Allow public client "
        "flows) and has the delegated Partner Center permission user_impersonation with admin consent, "
        "then start the sign-in again.",
    )


async def change_integration(
    rt: Runtime, integration_id: str, change: Callable[[Integration], Integration | None]
) -> Integration | None:
    """`rt.integrations.update`: the integration after `change`, None when it is gone. A `change` that
    claims something (a poll, say) raises `Claimed` when someone else holds it; this returns None then."""
    try:
        return await rt.integrations.update(integration_id, change)
    except Claimed:
        return None


class Claimed(Exception):
    """Raised by a `change` to leave the integration as it is: another request holds what it claims."""


async def store_refresh_token(
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

    return await change_integration(rt, integration.id, stored) or integration


def sign_in_first(integration: Integration) -> Conflict:
    return Conflict(
        ErrorCode.SIGN_IN_REQUIRED, "partnerSignin",
        f"No partner admin has signed in for integration {integration.id}; Partner Center's application "
        "consent needs a partner admin's delegated token.",
        f"Sign in once: POST /api/integrations/{integration.id}/partner-signin, open the verification page "
        f"it returns, enter the code, then poll GET /api/integrations/{integration.id}/partner-signin until "
        "it says done.",
    )


async def delegated_partner_token(rt: Runtime, integration: Integration) -> SecretStr:
    """A Partner Center access token of the signed-in partner admin; renews the stored refresh token.

    Raises `Conflict` `signInRequired` without a sign-in, and `signInExpired` when Entra refuses the
    refresh token (the sign-in is then marked expired); `PartnerTokenRefused` when Entra refuses it for
    another reason."""
    require_multi_tenant(integration, "consent")
    ref = integration.secret(AppRole.PARTNER_SIGNIN)
    if ref is None:
        raise sign_in_first(integration)
    try:
        refresh = await rt.secrets.get_secret(ref.name)
    except sdk.ResourceNotFoundError:
        raise sign_in_first(integration) from None
    grants = await delegated_grants(rt, integration)
    try:
        token = await grants.refresh(refresh)
    except EntraGrantError as exc:
        expired = exc.error == "invalid_grant" or bool(EXPIRED_REFRESH_CODES & set(exc.codes))
        code = f"AADSTS{exc.codes[0]}" if exc.codes else exc.error
        if not expired:
            raise PartnerTokenRefused(grant_error(exc, "partner admin's refresh token"), "partnerSignin") from None
        error = ErrorInfo(
            ErrorCode.SIGN_IN_EXPIRED,
            f"The partner admin's sign-in of integration {integration.id} no longer works ({code}): "
            "the refresh token expired (90 days unused) or was revoked.",
            f"Sign in again: POST /api/integrations/{integration.id}/partner-signin, then retry.",
        )

        def lapsed(current: Integration) -> Integration:
            state = current.partner_signin or PartnerSignin(status="expired", started_at=utcnow())
            return current.model_copy(update={"partner_signin": state.model_copy(
                update={"status": "expired", "error": ErrorModel.of(error)})})

        await change_integration(rt, integration.id, lapsed)
        log.warning("integration %s: partner admin refresh token refused (%s)", integration.id, code)
        raise Conflict(error.code, "partnerSignin", error.message, error.action) from None
    if token.refresh_token is not None:
        await store_refresh_token(rt, integration, token, signed_in=False)
    return token.access_token


__all__ = ["delegated_partner_token", "require_multi_tenant", "sign_in_first", "store_refresh_token"]
