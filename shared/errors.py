"""What Microsoft says, turned into one error code and an action a person can take.

Codes are CONTRACT section 3's registration codes plus the sync codes of the sync issue. Every
`ActionableError` carries a `message` (what happened) and an `action` (what to do in the Azure portal or
Partner Center). Neither ever contains a secret value: messages are built from codes, ids and
Microsoft's own error descriptions, which never echo the secret.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


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


# AADSTS codes: https://learn.microsoft.com/entra/identity-platform/reference-error-codes
_AADSTS = re.compile(r"AADSTS(\d+)")


def aadsts_codes(error_body: dict[str, Any] | str | None) -> list[int]:
    """The AADSTS numbers in an Entra error body (its `error_codes`, else parsed from the text)."""
    if isinstance(error_body, dict):
        codes = error_body.get("error_codes")
        if isinstance(codes, list) and all(isinstance(c, int) for c in codes):
            return list(codes)
        error_body = str(error_body.get("error_description", ""))
    return [int(m) for m in _AADSTS.findall(error_body or "")]


def from_aadsts(code: int, *, app_id: str, tenant_id: str, app_label: str = "app") -> ActionableError:
    """Map one AADSTS code met while getting an app-only token to an actionable error."""
    where = f"the {app_label} ({app_id}) in tenant {tenant_id}"
    portal = "Azure portal > Microsoft Entra ID > App registrations"
    if code == 7000222:
        return ActionableError(
            ErrorCode.SECRET_EXPIRED,
            f"The client secret of {where} has expired (AADSTS7000222).",
            f"In the {portal}, open the app {app_id} > Certificates & secrets, create a new client "
            f"secret, {ROTATE_HINT}",
        )
    if code == 7000215:
        return ActionableError(
            ErrorCode.INVALID_SECRET,
            f"The client secret given for {where} is not valid (AADSTS7000215).",
            "Copy the secret's Value (not its Secret ID) from Certificates & secrets of the app "
            f"{app_id}, or create a new one, {ROTATE_HINT}",
        )
    if code in (700016, 500011):
        return ActionableError(
            ErrorCode.APP_NOT_FOUND_IN_TENANT,
            f"The app {app_id} is not present in tenant {tenant_id} (AADSTS{code}): it was never "
            "consented there, or the app or tenant ID is wrong.",
            f"Check the app ID, then have a Global Administrator of tenant {tenant_id} grant admin "
            "consent to the app (Enterprise applications), or consent for the customer through "
            "Partner Center (POST .../tenants/{tenantId}/consent).",
        )
    if code in (65001, 90094):
        return ActionableError(
            ErrorCode.CONSENT_MISSING,
            f"Admin consent for the app {app_id} is missing in tenant {tenant_id} (AADSTS{code}).",
            f"In the {portal} > {app_id} > API permissions, select 'Grant admin consent', or consent "
            "for the customer through Partner Center.",
        )
    if code == 90099:
        return ActionableError(
            ErrorCode.CONSENT_MISSING,
            f"The app {app_id} has not been authorized in tenant {tenant_id} (AADSTS90099); under GDAP "
            "the partner's AdminAgents group no longer grants access.",
            "Consent the app in that customer through Partner Center's application consent "
            "(POST .../tenants/{tenantId}/consent), using a GDAP relationship that includes the "
            "Cloud Application Administrator role.",
        )
    if code == 90002:
        return ActionableError(
            ErrorCode.TENANT_NOT_FOUND,
            f"Tenant {tenant_id} does not exist or has no active subscriptions (AADSTS90002).",
            "Check the tenant ID; if the customer left, remove it with the integration's tenantFilter.",
        )
    if code == 7000112:
        return ActionableError(
            ErrorCode.APP_DISABLED,
            f"The app {app_id} is disabled in tenant {tenant_id} (AADSTS7000112).",
            "Enable the enterprise application (Properties > Enabled for users to sign in) in that tenant.",
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
        f"{service} kept answering 429 Too Many Requests past the sync's time budget.",
        "No action needed unless it repeats: memsync retries; other tools using the same app in this "
        "tenant share Microsoft's per-app limits.",
    )


def intune_not_licensed(tenant_id: str) -> ActionableError:
    return ActionableError(
        ErrorCode.INTUNE_NOT_LICENSED,
        f"Tenant {tenant_id} has no Intune licence (deviceManagement is not applicable to it).",
        "Assign a Microsoft Intune licence in that tenant, or exclude it with the integration's tenantFilter.",
    )
