"""memsync's settings: every app setting (docs/api.md, Settings), declared once, typed and validated.

In Azure these are app settings; locally they are environment variables (`func start` reads them from
local.settings.json). `load_settings()` is called once at start-up; a missing or malformed setting fails
there with a message naming it, instead of deep inside the first sync.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.clouds import CLOUDS, Cloud, CloudName

SYNC_QUEUE = "memsync-sync"
SYNC_POISON_QUEUE = f"{SYNC_QUEUE}-poison"

WebhookFormat = Literal["generic", "teams", "slack"]


class SettingsError(RuntimeError):
    """A setting is missing or malformed; the message names it."""


class Settings(BaseSettings):
    """The app settings. Field aliases are the exact setting names of docs/api.md (Settings)."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", populate_by_name=True)

    storage_connection_string: SecretStr | None = Field(
        default=None,
        validation_alias="AzureWebJobsStorage",
        description="Storage for queues and tables: a connection string, or `UseDevelopmentStorage=true`.",
    )
    storage_account_name: str | None = Field(
        default=None,
        validation_alias="AzureWebJobsStorage__accountName",
        description="Identity-based storage in Azure: the account name (used when no connection string).",
    )
    storage_queue_service_uri: str | None = Field(
        default=None,
        validation_alias="AzureWebJobsStorage__queueServiceUri",
        description="Identity-based storage: the queue endpoint, when not the public cloud's default.",
    )
    storage_table_service_uri: str | None = Field(
        default=None,
        validation_alias="AzureWebJobsStorage__tableServiceUri",
        description="Identity-based storage: the table endpoint, when not the public cloud's default.",
    )
    key_vault_url: str = Field(
        validation_alias="MEMSYNC_KEY_VAULT_URL",
        description="The vault that holds every integration secret.",
    )
    cloud_name: CloudName = Field(
        default=CloudName.PUBLIC,
        validation_alias="MEMSYNC_CLOUD",
        description="public, usgov, usgovdod or china: picks the endpoint defaults.",
    )
    authority_host_override: str | None = Field(default=None, validation_alias="MEMSYNC_AUTHORITY_HOST")
    graph_url_override: str | None = Field(default=None, validation_alias="MEMSYNC_GRAPH_URL")
    defender_url_override: str | None = Field(default=None, validation_alias="MEMSYNC_DEFENDER_URL")
    partner_center_url_override: str | None = Field(
        default=None, validation_alias="MEMSYNC_PARTNER_CENTER_URL"
    )
    sync_schedule: str = Field(
        default="0 0 */6 * * *",
        validation_alias="MEMSYNC_SYNC_SCHEDULE",
        description="NCRONTAB (six fields) of the scheduled sync timer.",
    )
    expiry_schedule: str = Field(
        default="0 0 7 * * *",
        validation_alias="MEMSYNC_EXPIRY_SCHEDULE",
        description="NCRONTAB (six fields) of the secret-expiry timer.",
    )
    expiry_thresholds_days: Annotated[tuple[int, ...], NoDecode] = Field(
        default=(30, 14, 7, 3, 1, 0),
        validation_alias="MEMSYNC_EXPIRY_THRESHOLDS_DAYS",
        description="Days-left marks that raise an alert, once each per secret version.",
    )
    alert_webhook_url: SecretStr | None = Field(
        default=None,
        validation_alias="MEMSYNC_ALERT_WEBHOOK_URL",
        description="Where alerts are POSTed as JSON (optional). A webhook URL is a credential.",
    )
    alert_webhook_format: WebhookFormat = Field(
        default="generic",
        validation_alias="MEMSYNC_ALERT_WEBHOOK_FORMAT",
        description="Body shape of the alert webhook: generic, teams or slack.",
    )
    sync_budget_seconds: float = Field(
        default=480.0,
        ge=30.0,
        le=540.0,
        validation_alias="MEMSYNC_SYNC_BUDGET_SECONDS",
        description="How long one execution of a tenant sync reads (seconds, 30-540): host.json's "
        "functionTimeout is 10 minutes, and the final writes need the rest.",
    )
    # memsync's own identity outside Azure (azure-identity's standard variables).
    azure_tenant_id: str | None = Field(default=None, validation_alias="AZURE_TENANT_ID")
    azure_client_id: str | None = Field(default=None, validation_alias="AZURE_CLIENT_ID")
    azure_client_secret: SecretStr | None = Field(default=None, validation_alias="AZURE_CLIENT_SECRET")

    @field_validator("expiry_thresholds_days", mode="before")
    @classmethod
    def _parse_thresholds(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",") if p.strip()]
            try:
                numbers = [int(p) for p in parts]
            except ValueError as exc:
                raise ValueError("must be a comma-separated list of whole days, e.g. 30,14,7,3,1,0") from exc
            value = numbers
        if isinstance(value, list | tuple):
            if not value or any(not isinstance(n, int) or n < 0 for n in value):
                raise ValueError("must list at least one whole number of days, none negative")
            return tuple(sorted(set(value), reverse=True))
        return value

    @field_validator(
        "key_vault_url",
        "authority_host_override",
        "graph_url_override",
        "defender_url_override",
        "partner_center_url_override",
    )
    @classmethod
    def _https_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.netloc:
            raise ValueError("must be an https:// URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _storage_given(self) -> Settings:
        if self.storage_connection_string is None and not self.storage_account_name:
            raise ValueError(
                "AzureWebJobsStorage is required: a connection string (UseDevelopmentStorage=true for "
                "Azurite) or, for identity-based access, AzureWebJobsStorage__accountName"
            )
        return self

    # Resolved endpoints: the override when given, the cloud's default otherwise.
    @property
    def cloud(self) -> Cloud:
        return CLOUDS[self.cloud_name]

    @property
    def authority_host(self) -> str:
        return self.authority_host_override or self.cloud.authority_host

    @property
    def graph_url(self) -> str:
        return self.graph_url_override or self.cloud.graph_url

    @property
    def defender_url(self) -> str:
        return self.defender_url_override or self.cloud.defender_url

    @property
    def partner_center_url(self) -> str:
        return self.partner_center_url_override or self.cloud.partner_center_url

    @property
    def authority_is_microsoft(self) -> bool:
        """azure-identity's instance discovery only works against Microsoft's own Entra hosts."""
        return (urlsplit(self.authority_host).hostname or "") in self.cloud.authority_hosts


# Setting names by field, for error messages and the drift checks between settings, sample and Bicep.
SETTING_NAMES: Mapping[str, str] = {
    name: str(field.validation_alias)
    for name, field in Settings.model_fields.items()
    if isinstance(field.validation_alias, str | AliasChoices)
}


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the settings from `environ` (default: the process environment)."""
    try:
        if environ is None:
            return Settings()  # type: ignore[call-arg]  # values come from the environment
        return Settings.model_validate({k: v for k, v in environ.items() if v != ""})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = err["loc"][0] if err["loc"] else ""
            name = SETTING_NAMES.get(str(loc), str(loc))
            message = "is required but not set" if err["type"] == "missing" else err["msg"]
            problems.append(f"{name} {message}" if name else message.removeprefix("Value error, "))
        raise SettingsError("memsync cannot start: " + "; ".join(problems)) from exc
