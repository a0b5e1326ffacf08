"""What Microsoft says, turned into one error code and an action a person can take.

Codes are the registration and sync codes of docs/api.md (Errors). Every
`ActionableError` carries a `message` (what happened) and an `action` (what to do in the Azure portal or
Partner Center). Neither ever contains a secret value: messages are built from codes, ids and
Microsoft's own error descriptions, which never echo the secret.

What a service refuses is a `DomainError` (`NotFound`, `Conflict`, `InvalidInput`, `CredentialsRejected`,
`ServiceUnavailable`, ...) naming the inputs concerned as `FieldProblem`s. None carries an HTTP status: the
HTTP edge renders them (`shared.api.problems.problem_from_domain`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from shared.clouds import CLOUDS


class ErrorCode(StrEnum):
    INVALID_SECRET = "invalidSecret"
    SECRET_EXPIRED = "secretExpired"
    APP_NOT_FOUND_IN_TENANT = "appNotFoundInTenant"
    CONSENT_MISSING = "consentMissing"
    PERMISSION_MISSING = "permissionMissing"
    TENANT_NOT_FOUND = "tenantNotFound"
    UNREACHABLE = "unreachable"
    INTUNE_NOT_LICENSED = "intuneNotLicensed"
    DEFENDER_UNAVAILABLE = "defenderUnavailable"
    THROTTLED = "throttled"
    APP_DISABLED = "appDisabled"
    DISCOVERY_FAILED = "discoveryFailed"
    RECORDS_SKIPPED = "recordsSkipped"
    INTERNAL = "internalError"
    # What a request asked for that cannot be done (the `errors[].code` of a refused request).
    NOT_FOUND = "notFound"
    REQUIRED = "required"
    INVALID_VALUE = "invalidValue"
    NOT_APPLICABLE = "notApplicable"
    REQUIRES_SECRET = "requiresSecret"
    ALREADY_REGISTERED = "alreadyRegistered"
    INTEGRATION_DISABLED = "integrationDisabled"
    SECRET_DELETED = "secretDeleted"
    NOT_MULTI_TENANT = "notMultiTenant"
    # The partner admin's sign-in (device code flow) and Partner Center's application consent (docs/gdap.md).
    # Two spellings are part of the API (docs/api.md): `signin*` for the device code flow itself,
    # `signIn*` for the stored sign-in a consent needs.
    SIGNIN_FAILED = "signinFailed"
    SIGNIN_EXPIRED = "signinExpired"
    SIGNIN_DECLINED = "signinDeclined"
    SIGN_IN_REQUIRED = "signInRequired"
    SIGN_IN_EXPIRED = "signInExpired"
    PARTNER_CENTER_FORBIDDEN = "partnerCenterForbidden"
    PARTNER_CENTER_UNAUTHORIZED = "partnerCenterUnauthorized"
    CUSTOMER_NOT_FOUND = "customerNotFound"
    CONSENT_FAILED = "consentFailed"
    # An edit made against a version of the resource that has changed since (If-Match, HTTP 412).
    CHANGED_MEANWHILE = "changedMeanwhile"


# Codes that a retry cannot fix: they need a person. A sync that meets one stops calling that tenant.
PERMANENT_CODES = frozenset(
    {
        ErrorCode.INVALID_SECRET,
        ErrorCode.SECRET_EXPIRED,
        ErrorCode.APP_NOT_FOUND_IN_TENANT,
        ErrorCode.CONSENT_MISSING,
        ErrorCode.PERMISSION_MISSING,
        ErrorCode.TENANT_NOT_FOUND,
        ErrorCode.INTUNE_NOT_LICENSED,
        ErrorCode.APP_DISABLED,
    }
)

ROTATE_HINT = "then give memsync the new value with PUT /api/integrations/{id}/secrets."


@dataclass(frozen=True)
class ErrorInfo:
    code: ErrorCode
    message: str
    action: str

    def to_json(self) -> dict[str, str]:
        return {"code": self.code.value, "message": self.message, "action": self.action}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> ErrorInfo | None:
        if not data:
            return None
        try:
            return cls(ErrorCode(data["code"]), str(data.get("message", "")), str(data.get("action", "")))
        except (KeyError, ValueError):
            return None


class ActionableError(Exception):
    """A failure a person must act on (or that tells them to wait), with its code and action."""

    def __init__(self, code: ErrorCode, message: str, action: str, *, retriable: bool | None = None) -> None:
        super().__init__(message)
        self.info = ErrorInfo(code, message, action)
        self.retriable = code not in PERMANENT_CODES if retriable is None else retriable

    @property
    def code(self) -> ErrorCode:
        return self.info.code


# --- what the domain refuses --------------------------------------------------------------------------
# Services raise these; none carries an HTTP status. The HTTP edge (`shared.api.problems.problem_from_domain`)
# renders each as a problem document, and decides the status, title and headers there.


@dataclass(frozen=True)
class FieldProblem:
    """What is wrong with one input: which field, its code, what happened and what to do."""

    field: str
    code: ErrorCode
    message: str
    action: str

    @classmethod
    def of(cls, field: str, info: ErrorInfo) -> FieldProblem:
        return cls(field, info.code, info.message, info.action)

    @property
    def info(self) -> ErrorInfo:
        return ErrorInfo(self.code, self.message, self.action)


class DomainError(Exception):
    """A request the domain refuses: `message` says why, `problems` name the inputs concerned."""

    def __init__(self, message: str, problems: list[FieldProblem] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.problems = list(problems or [])


class NotFound(DomainError):
    """No `what` with the id given in `field`; or, with `problems`, several ids that are unknown."""

    def __init__(
        self, what: str, field: str, action: str, *, problems: list[FieldProblem] | None = None,
        message: str | None = None,
    ) -> None:
        super().__init__(
            message or f"No {what} with that id.",
            problems or [FieldProblem(field, ErrorCode.NOT_FOUND, f"No {what} with that id exists.", action)],
        )
        self.what = what


class Conflict(DomainError):
    """The request clashes with the state of what it names (already registered, removed, not signed in)."""

    def __init__(self, code: ErrorCode, field: str, message: str, action: str) -> None:
        super().__init__(message, [FieldProblem(field, code, message, action)])
        self.code = code


class InvalidInput(DomainError):
    """Input that is well-formed but not acceptable; every problem at once."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        count = len(problems)
        super().__init__(f"{count} problem{'s' if count != 1 else ''} with the input.", problems)


class CredentialsRejected(DomainError):
    """Microsoft refused the credentials that were tried; nothing was stored."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__("The credentials were not accepted.", problems)


class PreconditionFailed(DomainError):
    """Microsoft refused because of something a person must set up first (`error` says what)."""

    def __init__(self, error: ErrorInfo, field: str) -> None:
        super().__init__(error.message, [FieldProblem.of(field, error)])
        self.error = error


class SigninNotStarted(PreconditionFailed):
    """Entra ID refused to start the partner admin's device code sign-in."""


class ConsentFailed(DomainError):
    """Partner Center did not make the consent; `retriable` when it could not be reached."""

    def __init__(self, error: ErrorInfo, field: str, *, retriable: bool, retry_after_seconds: int = 30) -> None:
        super().__init__(error.message, [FieldProblem.of(field, error)])
        self.error = error
        self.retriable = retriable
        self.retry_after_seconds = retry_after_seconds


class PartnerTokenRefused(DomainError):
    """Entra ID refused to renew the partner admin's token for a reason other than its expiry."""

    def __init__(self, error: ErrorInfo, field: str) -> None:
        super().__init__(error.message, [FieldProblem.of(field, error)])
        self.error = error


class ServiceUnavailable(DomainError):
    """A dependency (Key Vault, Entra ID, Partner Center) cannot serve now; try again later."""

    def __init__(self, error: ErrorInfo, retry_after_seconds: int = 30) -> None:
        super().__init__(error.message, [FieldProblem.of("", error)])
        self.error = error
        self.retry_after_seconds = retry_after_seconds

    @classmethod
    def of(cls, error: ActionableError) -> ServiceUnavailable:
        return cls(error.info)


# The registration codes of docs/api.md: what a credential check may answer (a closed list).
REGISTRATION_CODES = frozenset(
    {
        ErrorCode.INVALID_SECRET,
        ErrorCode.SECRET_EXPIRED,
        ErrorCode.APP_NOT_FOUND_IN_TENANT,
        ErrorCode.CONSENT_MISSING,
        ErrorCode.PERMISSION_MISSING,
        ErrorCode.TENANT_NOT_FOUND,
        ErrorCode.UNREACHABLE,
    }
)


def credential_problem(error: ActionableError, field: str) -> FieldProblem:
    """An `ActionableError` (already mapped from AADSTS) met while trying credentials, on `field`."""
    code = error.code
    if code not in REGISTRATION_CODES:
        # A disabled app is an app that is not usable there; Defender not set up in the tenant (AADSTS500011
        # for its API) leaves the app without Machine.Read.All; anything else is "could not get a token",
        # with the original text and action.
        code = {ErrorCode.APP_DISABLED: ErrorCode.APP_NOT_FOUND_IN_TENANT,
                ErrorCode.DEFENDER_UNAVAILABLE: ErrorCode.PERMISSION_MISSING}.get(code, ErrorCode.UNREACHABLE)
    return FieldProblem(field, code, error.info.message, error.info.action)


# Where a person finds each input value; the `action` of a problem with that field.
PORTAL = "Azure portal > Microsoft Entra ID"
FIELD_HINTS: dict[str, str] = {
    "kind": "Send kind 'multiTenant' (an MSP with a partner app) or 'singleTenant' (one tenant).",
    "displayName": "Send a short name for this integration, 1-256 characters.",
    "partnerTenantId": f"Send the partner tenant's Tenant ID (a GUID) from {PORTAL} > Overview.",
    "tenantId": f"Send the tenant's Tenant ID (a GUID) from {PORTAL} > Overview.",
    "partnerAppId": f"Send the partner app's Application (client) ID from {PORTAL} > App registrations.",
    "syncAppId": f"Send the sync app's Application (client) ID from {PORTAL} > App registrations.",
    "partnerAppSecret": "Send the Value of a client secret of the partner app (App registrations > "
    "Certificates & secrets); the Value is shown only when the secret is created.",
    "syncAppSecret": "Send the Value of a client secret of the sync app (App registrations > "
    "Certificates & secrets); the Value is shown only when the secret is created.",
    "includeDefender": "Send true or false (JSON booleans, not strings).",
    "collect": "List the optional entities to collect, each once, from autopilotDevices, entraDevices, "
    "vulnerabilities (needs includeDefender true) and licences; or leave the field out to collect them all.",
    "partnerAppSecretExpiresOn": "Send the secret's 'Expires' date from Certificates & secrets, a date still "
    "to come, in ISO 8601 with a zone, e.g. 2027-05-01T00:00:00Z; or leave the field out and memsync reads "
    "it from Microsoft Graph. If the secret has expired, create a new one there and send its Value.",
    "syncAppSecretExpiresOn": "Send the secret's 'Expires' date from Certificates & secrets, a date still "
    "to come, in ISO 8601 with a zone, e.g. 2027-05-01T00:00:00Z; or leave the field out and memsync reads "
    "it from Microsoft Graph. If the secret has expired, create a new one there and send its Value.",
    "tenantFilter": 'Send {"include": [GUIDs], "exclude": [GUIDs]}; a tenant may not be in both.',
    "include": "List customer Tenant IDs (GUIDs), at most 1000.",
    "exclude": "List customer Tenant IDs (GUIDs), at most 1000.",
    "tenantIds": "List Tenant IDs (GUIDs) of this integration's tenants, as GET .../tenants shows them.",
    "body": "Send a JSON object, as /api/openapi.json describes.",
}


# AADSTS codes: https://learn.microsoft.com/entra/identity-platform/reference-error-codes
# Each mapping below follows that page's description of the code (quoted in the comment above it), not
# the generic text Entra appends to several of them.
_AADSTS = re.compile(r"AADSTS(\d+)")
# The service principals memsync asks tokens for, by their well-known application ids:
# WindowsDefenderATP (Defender for Endpoint's API) and Microsoft Partner Center.
DEFENDER_API_APP_ID = "fc780465-2017-40d4-a0c5-307022471b92"
PARTNER_CENTER_API_APP_ID = "fa3d9a0c-3fb0-42cc-9193-47c7ecd2edbd"


def aadsts_codes(error_body: dict[str, Any] | str | None) -> list[int]:
    """The AADSTS numbers in an Entra error body (its `error_codes`, else parsed from the text)."""
    if isinstance(error_body, dict):
        codes = error_body.get("error_codes")
        if isinstance(codes, list) and all(isinstance(c, int) for c in codes):
            return list(codes)
        error_body = str(error_body.get("error_description", ""))
    return [int(m) for m in _AADSTS.findall(error_body or "")]


def resource_service(scope: str | None) -> str | None:
    """Which of memsync's APIs a token scope (or resource) is for, in any cloud: `graph`, `defender`,
    `partnerCenter`; None when it is none of them (or not given)."""
    if not scope:
        return None
    audience = scope.strip().removesuffix("/.default").rstrip("/").lower()
    for cloud in CLOUDS.values():
        for service, known in (("graph", cloud.graph_audience), ("defender", cloud.defender_audience),
                               ("partnerCenter", cloud.partner_center_audience)):
            if audience == known.lower():
                return service
    return None


def _resource_missing(service: str | None, *, app_id: str, tenant_id: str) -> ActionableError:
    """AADSTS500011 InvalidResourceServicePrincipalNotFound: "The resource principal named {name} was not
    found in the tenant named {tenant}". The *resource* (the API asked for) has no service principal in
    the tenant; the client app itself was found, so this is never "the app is not present"."""
    if service == "defender":
        # The WindowsDefenderATP service principal is created when Defender for Endpoint is set up in a
        # tenant; without it no app can be granted Machine.Read.All there.
        return ActionableError(
            ErrorCode.DEFENDER_UNAVAILABLE,
            f"The Defender for Endpoint API has no service principal in tenant {tenant_id} (AADSTS500011): "
            "Defender for Endpoint is not set up there (or was never onboarded), so no app can read it.",
            "If the tenant has no Microsoft Defender for Endpoint, sync it without Defender (includeDefender "
            "false); its Intune devices sync either way. If it has a licence for it, have a Global or Security "
            "Administrator of the tenant open the Microsoft Defender portal (https://security.microsoft.com) > "
            "Settings > Endpoints so that the service is set up and devices are onboarded, then grant the app "
            f"{app_id} the WindowsDefenderATP application permission Machine.Read.All with admin consent.",
            retriable=False,
        )
    if service == "partnerCenter":
        return ActionableError(
            ErrorCode.PERMISSION_MISSING,
            f"The Partner Center API has no service principal in tenant {tenant_id} (AADSTS500011): the tenant "
            "is not a Partner Center (CSP) partner tenant, or the Partner Center API was never added there.",
            "Check that partnerTenantId is the tenant of your Partner Center account (Partner Center > "
            "Account settings > Organization profile). If it is, add the Microsoft Partner Center API "
            f"(application id {PARTNER_CENTER_API_APP_ID}) to the partner app {app_id} under API "
            "permissions > APIs my organization uses, and grant admin consent.",
        )
    if service == "graph":
        # Microsoft Graph has a service principal in every tenant of its cloud.
        return ActionableError(
            ErrorCode.TENANT_NOT_FOUND,
            f"Microsoft Graph has no service principal in tenant {tenant_id} (AADSTS500011), which every "
            "tenant of this Microsoft cloud has: the tenant belongs to another cloud than the one memsync "
            "uses, or the tenant ID is wrong.",
            "Check the tenant ID, and that MEMSYNC_CLOUD (public, usgov, usgovdod, china) is the tenant's cloud.",
        )
    return ActionableError(
        ErrorCode.UNREACHABLE,
        f"The API memsync asked a token for has no service principal in tenant {tenant_id} (AADSTS500011).",
        "Check that the service is set up in that tenant and that the app has its permissions with admin "
        "consent.",
        retriable=False,
    )


def from_aadsts(
    code: int, *, app_id: str, tenant_id: str, app_label: str = "app", resource: str | None = None
) -> ActionableError:
    """Map one AADSTS code met while getting an app-only token to an actionable error. `resource` is the
    scope (or resource) the token was asked for: AADSTS500011 is about that API, not about the app."""
    where = f"the {app_label} ({app_id}) in tenant {tenant_id}"
    portal = "Azure portal > Microsoft Entra ID > App registrations"
    # 7000222 InvalidClientSecretExpiredKeysProvided: "The provided client secret keys are expired."
    if code == 7000222:
        return ActionableError(
            ErrorCode.SECRET_EXPIRED,
            f"The client secret of {where} has expired (AADSTS7000222).",
            f"In the {portal}, open the app {app_id} > Certificates & secrets, create a new client "
            f"secret, {ROTATE_HINT}",
        )
    # 7000215 InvalidClientSecretProvided: "Invalid client secret provided. Developer error - the app is
    # attempting to sign in without the necessary or correct authentication parameters."
    if code == 7000215:
        return ActionableError(
            ErrorCode.INVALID_SECRET,
            f"The client secret given for {where} is not valid (AADSTS7000215).",
            "Copy the secret's Value (not its Secret ID) from Certificates & secrets of the app "
            f"{app_id}, or create a new one, {ROTATE_HINT}",
        )
    # 700016 UnauthorizedClient_DoesNotMatchRequest: "The application wasn't found in the directory/tenant.
    # This can happen if the application has not been installed by the administrator of the tenant or
    # consented to by any user in the tenant. You might have misconfigured the identifier value for the
    # application or sent your authentication request to the wrong tenant."
    if code == 700016:
        return ActionableError(
            ErrorCode.APP_NOT_FOUND_IN_TENANT,
            f"The app {app_id} is not present in tenant {tenant_id} (AADSTS700016): it was never "
            "consented there, or the app or tenant ID is wrong.",
            f"Check the app ID, then have a Global Administrator of tenant {tenant_id} grant admin "
            "consent to the app (Enterprise applications), or consent for the customer through "
            "Partner Center (POST .../tenants/{tenantId}/consent).",
        )
    if code == 500011:
        return _resource_missing(resource_service(resource), app_id=app_id, tenant_id=tenant_id)
    # 65001 DelegationDoesNotExist: "The user or administrator has not consented to use the application";
    # 90094 AdminConsentRequired: "Administrator consent is required."
    if code in (65001, 90094):
        return ActionableError(
            ErrorCode.CONSENT_MISSING,
            f"Admin consent for the app {app_id} is missing in tenant {tenant_id} (AADSTS{code}).",
            f"In the {portal} > {app_id} > API permissions, select 'Grant admin consent', or consent "
            "for the customer through Partner Center.",
        )
    # 90099: "The application ... has not been authorized in the tenant. Applications must be authorized to
    # access the customer tenant before partner delegated administrators can use them."
    if code == 90099:
        return ActionableError(
            ErrorCode.CONSENT_MISSING,
            f"The app {app_id} has not been authorized in tenant {tenant_id} (AADSTS90099); under GDAP "
            "the partner's AdminAgents group no longer grants access.",
            "Consent the app in that customer through Partner Center's application consent "
            "(POST .../tenants/{tenantId}/consent), using a GDAP relationship that includes the "
            "Cloud Application Administrator role.",
        )
    # 90002 InvalidTenantName: "The tenant name wasn't found in the data store. Check to make sure you have
    # the correct tenant ID. ... Often, this is because a cross-cloud app was used against the wrong cloud."
    if code == 90002:
        return ActionableError(
            ErrorCode.TENANT_NOT_FOUND,
            f"Tenant {tenant_id} was not found (AADSTS90002): it does not exist, has no active "
            "subscription, or is in another Microsoft cloud than the one memsync uses.",
            "Check the tenant ID and that MEMSYNC_CLOUD is the tenant's cloud; if the customer left, remove "
            "it with the integration's tenantFilter.",
        )
    # 7000112 UnauthorizedClientApplicationDisabled: "The application is disabled."
    if code == 7000112:
        return ActionableError(
            ErrorCode.APP_DISABLED,
            f"The app {app_id} is disabled in tenant {tenant_id} (AADSTS7000112).",
            "Enable the enterprise application (Properties > Enabled for users to sign in) in that tenant.",
        )
    # 70011 InvalidScope: "The scope requested by the app is invalid." memsync asks each cloud's
    # `<audience>/.default`, so this is memsync's request, not the app registration.
    if code == 70011:
        return ActionableError(
            ErrorCode.INTERNAL,
            f"Entra ID refused the scope memsync asked for {where} (AADSTS70011: the scope is not valid).",
            "Check that MEMSYNC_CLOUD names the cloud of your tenants (the token scopes follow it); if it "
            "does, report this with the time and tenant.",
            retriable=False,
        )
    return ActionableError(
        ErrorCode.UNREACHABLE,
        f"Entra ID refused a token for {where} (AADSTS{code}).",
        f"Look up AADSTS{code} at https://login.microsoftonline.com/error?code={code} and fix the app "
        "registration it names.",
        retriable=False,
    )


def permission_missing(missing: list[str], *, app_id: str, tenant_id: str) -> ActionableError:
    names = ", ".join(missing)
    return ActionableError(
        ErrorCode.PERMISSION_MISSING,
        f"The app {app_id} lacks the application permission(s) {names} in tenant {tenant_id}.",
        f"In the app registration {app_id} > API permissions, add the application permission(s) {names}, "
        "then grant admin consent (for customers: consent again through Partner Center).",
    )


def unreachable(service: str, detail: str) -> ActionableError:
    return ActionableError(
        ErrorCode.UNREACHABLE,
        f"{service} could not be reached: {detail}.",
        "This is usually temporary; memsync retries on the next run. If it persists, check "
        "https://status.cloud.microsoft and the endpoint settings.",
    )


def throttled(service: str) -> ActionableError:
    return ActionableError(
        ErrorCode.THROTTLED,
        f"{service} kept answering 429 Too Many Requests past the sync's time budget or its allowance of "
        "throttled retries.",
        "No action needed unless it repeats: memsync retries; other tools using the same app in this "
        "tenant share Microsoft's per-app limits.",
    )


def intune_not_licensed(tenant_id: str) -> ActionableError:
    return ActionableError(
        ErrorCode.INTUNE_NOT_LICENSED,
        f"Tenant {tenant_id} has no Intune licence (deviceManagement is not applicable to it).",
        "Assign a Microsoft Intune licence in that tenant, or exclude it with the integration's tenantFilter.",
    )


class ChangedMeanwhile(DomainError):
    """The request named a version (If-Match) that is no longer current: someone changed it first."""

    def __init__(self, what: str, action: str) -> None:
        message = f"The {what} changed since the version this request names (If-Match)."
        super().__init__(message, [FieldProblem("If-Match", ErrorCode.CHANGED_MEANWHILE, message, action)])
