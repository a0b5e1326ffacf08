"""Request and response bodies of the HTTP API (docs/api.md), one pydantic model each.

The same models validate requests, shape responses and generate /api/openapi.json, so the document
cannot drift from the code. Request models are strict: unknown fields are refused, GUIDs must be GUIDs,
dates must carry a zone, secrets must be non-blank. Our validators raise `PydanticCustomError` whose type
is the `errors[].code` the client sees, and whose message never contains the input.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    TypeAdapter,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from shared.entities import COLLECTABLE, OTHER_LISTED, entity
from shared.mapping.devices import COMPLIANCE_STATES as DEVICE_COMPLIANCE_STATES
from shared.models import AppSecret, IntegrationChange, NewIntegration, NewSecrets, TenantFilter, _camel

GUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_GUID = re.compile(GUID_PATTERN)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
SECRET_MAX_CHARS = 1024
MAX_FILTER_TENANTS = 1000
COMPLIANCE_STATES = DEVICE_COMPLIANCE_STATES


def is_guid(value: object) -> bool:
    return isinstance(value, str) and _GUID.fullmatch(value) is not None


def _guid(value: object) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError("invalidType", "must be a string holding a GUID")
    if not _GUID.fullmatch(value):
        raise PydanticCustomError(
            "invalidGuid", "must be a GUID such as 8f3c2a1e-0b6d-4c5e-9a7f-1d2e3f4a5b6c"
        )
    return value.lower()


def _secret(value: object) -> SecretStr:
    # The messages below never include the value: a client secret must not come back in a response.
    if not isinstance(value, str):
        raise PydanticCustomError("invalidType", "must be a string (the client secret's Value)")
    value = value.strip()  # a pasted secret often carries a trailing newline; Entra secrets never do
    if not value:
        raise PydanticCustomError("blank", "must not be empty or only whitespace")
    if len(value) > SECRET_MAX_CHARS:
        raise PydanticCustomError("invalidLength", f"must be at most {SECRET_MAX_CHARS} characters")
    if _CONTROL.search(value):
        raise PydanticCustomError("invalidCharacters", "must not contain control characters")
    return SecretStr(value)


def _expires_on(value: object) -> datetime:
    if not isinstance(value, str):
        raise PydanticCustomError("invalidType", "must be an ISO 8601 date-time string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise PydanticCustomError(
            "invalidDateTime", "must be an ISO 8601 date-time with a zone, e.g. 2027-05-01T00:00:00Z"
        ) from None
    if parsed.tzinfo is None or "T" not in value.upper():
        raise PydanticCustomError(
            "invalidDateTime", "must be an ISO 8601 date-time with a zone, e.g. 2027-05-01T00:00:00Z"
        )
    parsed = parsed.astimezone(UTC)
    # A date already past is refused (422, shared.api.problems.UNPROCESSABLE_CODES): stored, it would raise
    # false "expired" alerts. The code names the problem; the message never repeats the value.
    if parsed <= datetime.now(UTC):
        raise PydanticCustomError(
            "dateInPast",
            "is in the past: a secret's expiry date must be later than now (the secret has expired, or the date "
            "is wrong; Certificates & secrets shows it as 'Expires')",
        )
    return parsed


def _display_name(value: object) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError("invalidType", "must be a string")
    value = value.strip()
    if not value:
        raise PydanticCustomError("blank", "must not be empty or only whitespace")
    if len(value) > 256:
        raise PydanticCustomError("invalidLength", "must be at most 256 characters")
    if _CONTROL.search(value):
        raise PydanticCustomError("invalidCharacters", "must not contain control characters")
    return value


Guid = Annotated[
    str,
    BeforeValidator(_guid),
    WithJsonSchema({"type": "string", "format": "uuid", "pattern": GUID_PATTERN}),
]
SecretValue = Annotated[
    SecretStr,
    BeforeValidator(_secret),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": SECRET_MAX_CHARS,
            "writeOnly": True,
            "description": "A client secret's Value (not its Secret ID). Stored only in Key Vault.",
        }
    ),
]
ExpiresOn = Annotated[
    datetime,
    BeforeValidator(_expires_on),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "description": "When the secret expires (ISO 8601 with a zone), as Certificates & secrets shows it.",
        }
    ),
]
DisplayName = Annotated[
    str, BeforeValidator(_display_name), WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 256})
]


def _collectable(value: object) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError("invalidType", "must be a string naming an entity")
    if value not in COLLECTABLE:
        raise PydanticCustomError("invalidValue", "must be one of " + ", ".join(COLLECTABLE))
    return value


CollectName = Annotated[
    str, BeforeValidator(_collectable), WithJsonSchema({"type": "string", "enum": list(COLLECTABLE)})
]
COLLECT_DESCRIPTION = (
    "The optional entities to collect besides devices and software (absent: all of them). vulnerabilities is "
    "read from Defender for Endpoint and needs includeDefender true. Partner Center consent asks for the "
    "permissions of exactly these.")


def _checked_collect(collect: list[str] | None, include_defender: bool) -> list[str] | None:
    if collect is None:
        return None
    if len(set(collect)) != len(collect):
        raise PydanticCustomError("duplicate", "collect names an entity twice")
    defender_only = [n for n in collect if entity(n).source.service == "defender"]
    if defender_only and not include_defender:
        raise PydanticCustomError("conflictingOptions", f"collect names {', '.join(defender_only)}, which is read "
                                  "from Defender for Endpoint, while includeDefender is false")
    return collect


class RequestModel(BaseModel):
    """A request body: camelCase names only, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=_camel,
        validate_by_alias=True,
        validate_by_name=False,
        extra="forbid",
        hide_input_in_errors=True,
    )


class ResponseModel(BaseModel):
    model_config = ConfigDict(alias_generator=_camel, validate_by_name=True, serialize_by_alias=True)


# --- requests ---------------------------------------------------------------------------------------


class TenantFilterIn(RequestModel):
    """Which customer tenants to sync: `include` (empty: all) minus `exclude`."""

    include: list[Guid] = Field(default_factory=list, max_length=MAX_FILTER_TENANTS)
    exclude: list[Guid] = Field(default_factory=list, max_length=MAX_FILTER_TENANTS)

    @model_validator(mode="after")
    def _disjoint(self) -> TenantFilterIn:
        if set(self.include) & set(self.exclude):
            raise PydanticCustomError("conflictingFilter", "names a tenant in both include and exclude")
        return self


class MultiTenantRegistration(RequestModel):
    """An MSP: a partner app that lists customers, and a multi-tenant sync app consented in each."""

    kind: Literal["multiTenant"]
    display_name: DisplayName | None = None
    partner_tenant_id: Guid
    partner_app_id: Guid
    partner_app_secret: SecretValue
    sync_app_id: Guid
    sync_app_secret: SecretValue
    include_defender: StrictBool = True
    collect: list[CollectName] | None = Field(default=None, max_length=len(COLLECTABLE) * 2,
                                               description=COLLECT_DESCRIPTION)
    partner_app_secret_expires_on: ExpiresOn | None = None
    sync_app_secret_expires_on: ExpiresOn | None = None
    tenant_filter: TenantFilterIn | None = None
    auto_consent: StrictBool = Field(
        default=False,
        description="Consent the sync app through Partner Center in every customer that needs it, as soon as "
        "a partner admin has signed in (POST /api/integrations/{id}/partner-signin); recorded until then.",
    )

    @field_validator("collect")
    @classmethod
    def _collect(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        return _checked_collect(value, info.data.get("include_defender", True))

    def to_domain(self) -> NewIntegration:
        tenant_filter = self.tenant_filter
        return NewIntegration(
            home_tenant_id=self.partner_tenant_id,
            sync_app=AppSecret(self.sync_app_id, self.sync_app_secret, self.sync_app_secret_expires_on),
            partner_app=AppSecret(self.partner_app_id, self.partner_app_secret, self.partner_app_secret_expires_on),
            display_name=self.display_name,
            include_defender=self.include_defender,
            collect=self.collect,
            tenant_filter=TenantFilter(include=tenant_filter.include, exclude=tenant_filter.exclude)
            if tenant_filter
            else TenantFilter(),
            auto_consent=self.auto_consent,
        )


class SingleTenantRegistration(RequestModel):
    """One tenant, one sync app registered in it."""

    kind: Literal["singleTenant"]
    display_name: DisplayName | None = None
    tenant_id: Guid
    sync_app_id: Guid
    sync_app_secret: SecretValue
    include_defender: StrictBool = True
    collect: list[CollectName] | None = Field(default=None, max_length=len(COLLECTABLE) * 2,
                                               description=COLLECT_DESCRIPTION)
    sync_app_secret_expires_on: ExpiresOn | None = None

    @field_validator("collect")
    @classmethod
    def _collect(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        return _checked_collect(value, info.data.get("include_defender", True))

    def to_domain(self) -> NewIntegration:
        return NewIntegration(
            home_tenant_id=self.tenant_id,
            sync_app=AppSecret(self.sync_app_id, self.sync_app_secret, self.sync_app_secret_expires_on),
            display_name=self.display_name,
            include_defender=self.include_defender,
            collect=self.collect,
        )


Registration = Annotated[MultiTenantRegistration | SingleTenantRegistration, Field(discriminator="kind")]
REGISTRATION = TypeAdapter(Registration)
REGISTRATION_TAGS = frozenset({"multiTenant", "singleTenant"})


class SecretRotation(RequestModel):
    """New secret values; each is tried before it replaces the one in use."""

    partner_app_secret: SecretValue | None = None
    partner_app_secret_expires_on: ExpiresOn | None = None
    sync_app_secret: SecretValue | None = None
    sync_app_secret_expires_on: ExpiresOn | None = None

    def to_domain(self) -> NewSecrets:
        return NewSecrets(
            partner_app_secret=self.partner_app_secret,
            partner_app_secret_expires_on=self.partner_app_secret_expires_on,
            sync_app_secret=self.sync_app_secret,
            sync_app_secret_expires_on=self.sync_app_secret_expires_on,
        )


class IntegrationPatch(RequestModel):
    """What may change after registration (PATCH /api/integrations/{id}): each field given replaces the
    stored one, a field left out stays as it is; `collect: null` collects every optional entity again."""

    display_name: DisplayName | None = None
    tenant_filter: TenantFilterIn | None = Field(default=None, description="multiTenant only.")
    include_defender: StrictBool | None = None
    collect: list[CollectName] | None = Field(default=None, max_length=len(COLLECTABLE) * 2,
                                               description=COLLECT_DESCRIPTION + " null: all of them.")
    status: Literal["active", "disabled"] | None = Field(
        default=None, description="disabled: no more syncs (the secrets stay, unlike DELETE); active: sync again.")

    @field_validator("collect")
    @classmethod
    def _collect_once(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise PydanticCustomError("duplicate", "collect names an entity twice")
        return value

    def to_domain(self) -> IntegrationChange:
        given = self.model_fields_set
        return IntegrationChange(
            display_name=self.display_name,
            tenant_filter=TenantFilter(include=self.tenant_filter.include, exclude=self.tenant_filter.exclude)
            if self.tenant_filter is not None else None,
            include_defender=self.include_defender,
            collect=self.collect,
            collect_given="collect" in given,
            status=self.status,
        )


class SyncRequest(RequestModel):
    """Which tenants to sync now; absent means every tenant of the integration."""

    tenant_ids: list[Guid] | None = Field(default=None, min_length=1, max_length=MAX_FILTER_TENANTS)


# --- responses --------------------------------------------------------------------------------------


class ErrorOut(ResponseModel):
    code: str
    message: str
    action: str


class SecretInfo(ResponseModel):
    """Where a secret lives and when it expires; never its value."""

    name: str = Field(description="The Key Vault secret name.")
    app_id: str
    expires_on: datetime | None
    expires_on_source: Literal["given", "graph", "assumed"]


class TenantFilterOut(ResponseModel):
    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)


class IntegrationOut(ResponseModel):
    id: str
    kind: Literal["multiTenant", "singleTenant"]
    display_name: str
    status: Literal["active", "error", "disabled"]
    partner_tenant_id: str | None = Field(default=None, description="Multi-tenant only.")
    tenant_id: str | None = Field(default=None, description="Single-tenant only.")
    partner_app_id: str | None = Field(default=None, description="Multi-tenant only.")
    sync_app_id: str
    include_defender: bool
    collect: list[str] = Field(description="The optional entities this integration collects (with includeDefender "
                               "deciding the Defender ones).")
    tenant_filter: TenantFilterOut
    secrets: list[SecretInfo]
    created_at: datetime
    error: ErrorOut | None


class FieldWarningOut(ResponseModel):
    field: str
    code: str
    message: str
    action: str


class RegisteredOut(IntegrationOut):
    """The answer to a registration: the integration, and what was accepted with a warning."""

    warnings: list[FieldWarningOut] = Field(
        default_factory=list, description="Optional application permissions the sync app lacks (single "
        "tenant): the sync goes on without what they read. Empty when there is nothing to say.")


class IntegrationList(ResponseModel):
    value: list[IntegrationOut]
    next_link: str | None = Field(default=None, description="Absent on the last page.")


def _entity_counts(schema: dict[str, Any]) -> None:
    """One integer per other listed entity (`shared.entities.OTHER_LISTED`), under the entity's name, and
    `facts`: per entity with declared facts, its figures summed over the tenant."""
    properties = schema.setdefault("properties", {})
    for other in OTHER_LISTED:
        properties[other.name] = {
            "type": "integer", "description": f"{other.summary} Present after the last sync that read them."}
    properties["facts"] = {
        "type": "object",
        "description": "What the last sync saw beyond the counts, per entity it collected: devices "
                       "{osEnded, osEndingSoon} (past, or within 180 days of, their OS release's end of "
                       "support), autopilotDevices {unenrolled}, entraDevices {unmanaged}, vulnerabilities "
                       "{critical, high, medium, low}, "
                       "licences {enabled, consumed} (prepaid units enabled, units assigned).",
        "additionalProperties": {"type": "object", "additionalProperties": {"type": "integer"}},
    }


class TenantCountsOut(ResponseModel):
    """Devices and software present after the last successful sync, and each other listed entity's count
    under its name (absent until a sync collected it)."""

    model_config = ConfigDict(**ResponseModel.model_config, extra="allow", json_schema_extra=_entity_counts)

    devices: int = 0
    software: int = 0
    defender_machines: int = 0
    skipped: int = Field(default=0, description="Records of the last sync's device and software listings "
                         "that were not written: listed but unreadable (a field of an unexpected type, an "
                         "oversized value; each kept its last stored copy and was not marked removed), an id "
                         "listed twice, or a row Table Storage refused.")


class GdapRelationshipOut(ResponseModel):
    id: str
    display_name: str | None = None
    status: str | None = None
    end_date_time: datetime | None = None
    roles: list[str] = Field(default_factory=list, description="Entra role names (template ids when unknown).")


class RelationshipOut(ResponseModel):
    partner_center: str | None = Field(default=None, description="Partner Center relationshipToPartner.")
    dap: bool = Field(default=False, description="A DAP contract (Graph /contracts).")
    gdap: list[GdapRelationshipOut] = Field(default_factory=list)
    listed: bool = Field(default=True, description="false once the partner's listings no longer name the customer.")


class TokenOut(ResponseModel):
    ok: bool | None = Field(default=None, description="Whether the sync app got a token there; null: not known yet.")
    roles: list[str] = Field(default_factory=list, description="Application permissions in its token (probe).")
    missing: list[str] = Field(default_factory=list)
    error: str | None = None
    source: Literal["sync", "probe", "none"] = "none"
    checked_at: datetime | None = None


class ConsentFactsOut(ResponseModel):
    status: Literal["granted", "failed"]
    at: datetime
    error: ErrorOut | None = None


class AccessOut(ResponseModel):
    """How memsync reaches the customer (docs/gdap.md): one verdict and the action that fixes it."""

    verdict: Literal["ok", "consentMissing", "permissionMissing", "noRelationship", "unsupportedRelationship",
                     "intuneNotLicensed", "pending", "unknown"]
    action: str | None = None
    relationship: RelationshipOut
    token: TokenOut
    intune: Literal["ok", "notLicensed", "unknown"]
    defender: Literal["ok", "unavailable", "notIncluded", "unknown"]
    consent: ConsentFactsOut | None = Field(default=None, description="The last Partner Center consent memsync made.")
    checked_at: datetime


class TenantOut(ResponseModel):
    tenant_id: str
    display_name: str | None
    default_domain_name: str | None
    status: Literal["pending", "syncing", "ok", "error", "excluded"]
    last_sync_started_at: datetime | None
    last_sync_finished_at: datetime | None
    last_success_at: datetime | None
    counts: TenantCountsOut
    error: ErrorOut | None
    access: AccessOut | None = Field(default=None, description="Multi-tenant only; null until diagnosed.")
    lease_until: datetime | None = Field(
        default=None,
        description="While `syncing`: when the running sync's lease lapses. A sync whose worker died holds the "
                    "tenant until then; a manual sync asked for meanwhile runs at that time.")


class TenantList(ResponseModel):
    value: list[TenantOut]
    next_link: str | None = None


class DefenderOut(ResponseModel):
    machine_id: str | None = None
    health_status: str | None = None
    risk_score: str | None = None
    exposure_level: str | None = None
    onboarding_status: str | None = None
    last_seen: datetime | None = None


class AutopilotJoinOut(ResponseModel):
    """The Autopilot identity of a device, matched by managed device id or (trusted) serial number."""

    id: str
    group_tag: str | None = None
    enrollment_state: str | None = None
    purchase_order_identifier: str | None = None
    last_contacted_date_time: datetime | None = None
    matched_by: Literal["managedDeviceId", "serialNumber"]


class EntraJoinOut(ResponseModel):
    """The Entra ID device of a device, matched by its azureADDeviceId."""

    id: str
    trust_type: str | None = None
    is_compliant: bool | None = None
    account_enabled: bool | None = None
    approximate_last_sign_in_date_time: datetime | None = None
    registration_date_time: datetime | None = None


class VulnerabilitySummaryOut(ResponseModel):
    """What Defender lists against a device's machine: counts by severity and the most severe CVEs."""

    total: int
    critical: int = 0
    high: int = 0
    medium: int = 0
    low: int = 0
    top_cves: list[str] = Field(default_factory=list, description="Up to five CVE ids, most severe first.")


class OsSupportOut(ResponseModel):
    """Where the device's OS release stands against Microsoft's published end of support, on the day of the
    sync that wrote the device (shared/mapping/lifecycle.py, its dates in shared/mapping/os_lifecycle.json)."""

    status: Literal["supported", "endingSoon", "ended", "unknown"] = Field(
        description="endingSoon: support ends within 180 days; ended: after endsOn; unknown: a platform or "
                    "build without published dates (iOS, iPadOS, macOS, Android, an unlisted Windows build).")
    ends_on: date | None = Field(default=None, description="The last day Microsoft services the release (for "
                                 "Windows Server, the end of extended support). Intune does not say the edition: "
                                 "the earliest date of the release's editions (Home/Pro's for Windows 11).")
    release: str | None = Field(default=None, description='The release matched, e.g. "Windows 11 23H2".')
    source: str | None = Field(default=None, description="The Microsoft lifecycle page the date comes from.")


class DeviceOut(ResponseModel):
    """A hardware asset: an Intune managed device, with its Defender health when matched, and the
    Autopilot identity, Entra ID device and vulnerabilities that describe the same machine."""

    id: str = Field(description="Intune managed device id.")
    tenant_id: str
    device_name: str | None = None
    serial_number: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    operating_system: str | None = None
    os_version: str | None = None
    os_support: OsSupportOut | None = Field(
        default=None, description="null for a device not synced since memsync judged OS support.")
    compliance_state: str | None = None
    management_agent: str | None = None
    owner_type: str | None = None
    enrolled_date_time: datetime | None = None
    last_sync_date_time: datetime | None = None
    user_principal_name: str | None = None
    azure_a_d_device_id: str | None = Field(default=None, alias="azureADDeviceId")
    total_storage_space_in_bytes: int | None = None
    free_storage_space_in_bytes: int | None = None
    physical_memory_in_bytes: int | None = None
    wi_fi_mac_address: str | None = Field(default=None, alias="wiFiMacAddress")
    ethernet_mac_address: str | None = None
    imei: str | None = None
    is_encrypted: bool | None = None
    defender: DefenderOut | None = None
    autopilot: AutopilotJoinOut | None = None
    entra_device: EntraJoinOut | None = None
    vulnerabilities: VulnerabilitySummaryOut | None = Field(
        default=None, description="null when Defender lists none for the device's machine, or is not read.")
    first_seen_at: datetime | None = None
    last_seen_at: datetime | None = None
    removed_at: datetime | None = Field(default=None, description="null while the device is in Intune.")
    serial_placeholder: bool = Field(
        default=False, description="true when serialNumber is absent or a firmware placeholder "
                                   "(TO BE FILLED BY O.E.M., 0000000, ...): not an identity.")


class DeviceList(ResponseModel):
    value: list[DeviceOut]
    next_link: str | None = None


class SoftwareOut(ResponseModel):
    """A detected app (software title and version) in one tenant."""

    id: str
    tenant_id: str
    display_name: str | None = None
    version: str | None = None
    publisher: str | None = None
    platform: str | None = None
    size_in_byte: int | None = None
    device_count: int | None = None


class SoftwareList(ResponseModel):
    value: list[SoftwareOut]
    next_link: str | None = None


class AutopilotDeviceOut(ResponseModel):
    """A Windows Autopilot device identity: hardware registered for Autopilot, enrolled or not."""

    id: str = Field(description="Autopilot device identity id.")
    tenant_id: str
    serial_number: str | None = None
    serial_placeholder: bool = Field(default=False, description="true when serialNumber is absent or a "
                                     "firmware placeholder: not an identity.")
    manufacturer: str | None = None
    model: str | None = None
    group_tag: str | None = None
    purchase_order_identifier: str | None = None
    enrollment_state: str | None = Field(default=None, description="unknown, enrolled, pendingReset, failed or "
                                         "notContacted.")
    enrolled: bool = Field(default=False, description="Intune manages the machine (enrolled, with a managed "
                           "device id).")
    last_contacted_date_time: datetime | None = None
    managed_device_id: str | None = Field(default=None, description="The Intune managed device; null when "
                                          "never enrolled.")
    azure_active_directory_device_id: str | None = None
    display_name: str | None = None
    user_principal_name: str | None = None
    sku_number: str | None = None
    system_family: str | None = None


class AutopilotDeviceList(ResponseModel):
    value: list[AutopilotDeviceOut]
    next_link: str | None = None


class EntraDeviceOut(ResponseModel):
    """A Microsoft Entra ID device, managed by Intune or not."""

    id: str = Field(description="Entra ID device object id.")
    tenant_id: str
    device_id: str | None = Field(default=None, description="The id Intune (azureADDeviceId) and Defender "
                                  "(aadDeviceId) know the device by.")
    display_name: str | None = None
    operating_system: str | None = None
    operating_system_version: str | None = None
    trust_type: str | None = Field(default=None, description="Workplace, AzureAd or ServerAd.")
    is_managed: bool = Field(default=False, description="Managed by an MDM (Intune).")
    is_compliant: bool | None = None
    account_enabled: bool | None = None
    approximate_last_sign_in_date_time: datetime | None = None
    registration_date_time: datetime | None = None
    manufacturer: str | None = None
    model: str | None = None


class EntraDeviceList(ResponseModel):
    value: list[EntraDeviceOut]
    next_link: str | None = None


class VulnerabilityOut(ResponseModel):
    """A vulnerability Defender for Endpoint sees on a machine: one CVE in one product version."""

    id: str = Field(description="Defender's id: machine, CVE, vendor, product, version and fixing KB.")
    tenant_id: str
    machine_id: str
    cve_id: str | None = None
    product_name: str | None = None
    product_vendor: str | None = None
    product_version: str | None = None
    severity: str | None = Field(default=None, description="Low, Medium, High or Critical.")
    fixing_kb_id: str | None = None


class VulnerabilityList(ResponseModel):
    value: list[VulnerabilityOut]
    next_link: str | None = None


class PrepaidUnitsOut(ResponseModel):
    enabled: int = 0
    suspended: int = 0
    warning: int = 0
    locked_out: int = 0


class LicenceOut(ResponseModel):
    """A subscribed licence (SKU) of a tenant: units paid for against units assigned."""

    id: str
    tenant_id: str
    sku_id: str | None = None
    sku_part_number: str | None = None
    capability_status: str | None = Field(default=None, description="Enabled, Warning, Suspended, Deleted or "
                                          "LockedOut.")
    applies_to: str | None = None
    consumed_units: int | None = None
    prepaid_units: PrepaidUnitsOut | None = None


class LicenceList(ResponseModel):
    value: list[LicenceOut]
    next_link: str | None = None


# The response model of each entity the API lists (shared.entities): the item and the page.
ENTITY_MODELS: dict[str, tuple[type[ResponseModel], type[ResponseModel]]] = {
    "devices": (DeviceOut, DeviceList),
    "software": (SoftwareOut, SoftwareList),
    "autopilotDevices": (AutopilotDeviceOut, AutopilotDeviceList),
    "entraDevices": (EntraDeviceOut, EntraDeviceList),
    "vulnerabilities": (VulnerabilityOut, VulnerabilityList),
    "licences": (LicenceOut, LicenceList),
}


class AlertOut(ResponseModel):
    id: str
    integration_id: str
    kind: str = Field(description="secretExpiring, secretExpired, secretInvalid, ...")
    app_id: str | None
    expires_on: datetime | None
    days_left: int | None
    status: Literal["open", "resolved"]
    raised_at: datetime
    message: str
    action: str
    integration_name: str | None = None
    role: str = Field(description="Which secret: partner, sync or partnerSignin.")
    mark: int | None = Field(default=None, description="The days-left mark that raised it; null for a "
                                                       "credential or relationship alert.")
    expires_on_source: str | None = Field(default=None, description="graph, given or assumed.")
    resolved_at: datetime | None = None
    resolved_reason: str | None = Field(default=None, description="Why it was resolved, e.g. 'superseded by "
                                                                  "the 7-day mark' or 'integration deleted'.")
    tenant_id: str | None = Field(default=None, description="The customer tenant a syncPoisoned or relationship "
                                                            "alert is about.")
    delivered: bool = False
    delivered_at: datetime | None = None


class AlertList(ResponseModel):
    value: list[AlertOut]
    next_link: str | None = None


class DeliveryOut(ResponseModel):
    configured: bool = Field(description="Whether MEMSYNC_ALERT_WEBHOOK_URL is set.")
    delivered: int
    failed: int
    errors: list[str] = Field(description="'<alert id>: <HTTP status or exception type>', never a URL.")


class ExpiryCheckOut(ResponseModel):
    """What one run of the secret-expiry check did (POST /api/alerts/check)."""

    secrets_checked: int
    alerts_raised: int
    alerts_resolved: int = Field(description="Superseded, of a replaced secret, of a deleted integration, ...")
    failures: list[str] = Field(description="'<Key Vault secret name>: <error type>' of secrets left for the "
                                            "next run.")
    delivery: DeliveryOut


class SyncAccepted(ResponseModel):
    integration_id: str
    trigger: Literal["manual"]
    queued: int = Field(description="Sync jobs queued, one per tenant.")


class PartnerSigninOut(ResponseModel):
    """The partner admin's sign-in (device code flow); never a code or token but the user code."""

    integration_id: str
    status: Literal["notStarted", "pending", "done", "failed", "expired"]
    user_code: str | None = Field(default=None, description="Enter it at verificationUri while pending.")
    verification_uri: str | None = None
    message: str | None = None
    expires_at: datetime | None = Field(default=None, description="When the pending code expires.")
    interval: int | None = Field(default=None, description="Seconds to wait between polls (GET).")
    signed_in_at: datetime | None = None
    signed_in_as: str | None = None
    refresh_expires_on: datetime | None = Field(
        default=None, description="90 days after the sign-in was last used; every consent renews it.")
    auto_consent: bool = False
    error: ErrorOut | None = None
    consents: list[ConsentOut] | None = Field(
        default=None, description="With autoConsent: the consents run when the sign-in completed.")


class ConsentOut(ResponseModel):
    tenant_id: str
    status: Literal["consented", "alreadyConsented", "reconsented", "failed"]
    queued: int = Field(default=0, description="Sync jobs queued for the tenant.")
    access: AccessOut | None = None
    error: ErrorOut | None = None


class ConsentList(ResponseModel):
    value: list[ConsentOut]
    consented: int
    failed: int


class HealthOut(ResponseModel):
    model_config = ConfigDict(extra="allow")

    status: str
    version: str
    checks: dict[str, Any] = Field(default_factory=dict)


class FieldErrorOut(ResponseModel):
    field: str
    code: str
    message: str
    action: str


class ProblemOut(ResponseModel):
    """An RFC 9457 problem document (`application/problem+json`)."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldErrorOut]


PartnerSigninOut.model_rebuild()


class AuditActorOut(ResponseModel):
    kind: Literal["functionKey", "user", "app"] = Field(description="functionKey: the function key (automation); "
                                                        "user or app once Entra ID sign-in is configured.")
    name: str
    id: str | None = Field(default=None, description="The signed-in principal's object id; null for the key.")


class AuditEntryOut(ResponseModel):
    """One change asked of the API, made or refused: who, what, when, from where, and the outcome."""

    id: str
    at: datetime
    action: str = Field(description="integration.register, integration.change, integration.rotateSecrets, "
                        "integration.sync, integration.delete, integration.partnerSignin, integration.consent, "
                        "tenant.consent, alerts.check.")
    outcome: Literal["done", "refused", "failed"]
    status: int = Field(description="The HTTP status answered.")
    actor: AuditActorOut
    integration_id: str | None = None
    tenant_id: str | None = None
    fields: list[str] = Field(default_factory=list, description="The names of the fields the request sent; "
                              "never a value.")
    code: str | None = Field(default=None, description="The first errors[].code of a refusal.")
    address: str | None = Field(default=None, description="The client address the platform saw.")
    method: str
    route: str


class AuditList(ResponseModel):
    value: list[AuditEntryOut]
    next_link: str | None = None
