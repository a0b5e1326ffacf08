"""Settings parity: shared/settings.py, local.settings.sample.json and the Bicep app settings list the
same names (docs/api.md, Settings), with the same defaults, so configuration cannot drift.

Documented exceptions (docs/deploy.md, "App settings"):
- `AzureWebJobsStorage` (a connection string) exists locally only. In Azure, shared-key access is off, so
  there is no connection string; identity-based `AzureWebJobsStorage__accountName` (+ service URIs)
  replaces it.
- `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET` are memsync's identity outside Azure. In
  Azure memsync is the app's system-assigned managed identity: a client secret in app settings would
  bypass it, and `AZURE_CLIENT_ID` would make `host_credential` ask for a user-assigned identity that does
  not exist. They must not appear in Bicep.
- `AzureWebJobsStorage__credential` and `AzureWebJobsStorage__blobServiceUri` are read by the Functions
  host only (memsync uses no blobs); Bicep may declare them without the settings module doing so.
"""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path

import pytest

from shared.clouds import CloudName
from shared.settings import SETTING_NAMES, Settings, WebhookFormat, load_settings
from tests.unit.infra import bicep

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
LOCAL_ONLY = {"AzureWebJobsStorage"}
OUTSIDE_AZURE_IDENTITY = {"AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"}
HOST_ONLY = {"AzureWebJobsStorage__credential", "AzureWebJobsStorage__blobServiceUri"}
OURS = re.compile(r"^(MEMSYNC_|AzureWebJobsStorage)")

# Setting -> the Bicep parameter that feeds it (same name in main.bicep, resources.bicep and
# modules/function-app.bicep) -> the settings field whose default the parameter's default must equal.
TUNABLE = {
    "MEMSYNC_CLOUD": ("cloud", "cloud_name"),
    "MEMSYNC_AUTHORITY_HOST": ("authorityHost", "authority_host_override"),
    "MEMSYNC_GRAPH_URL": ("graphUrl", "graph_url_override"),
    "MEMSYNC_DEFENDER_URL": ("defenderUrl", "defender_url_override"),
    "MEMSYNC_PARTNER_CENTER_URL": ("partnerCenterUrl", "partner_center_url_override"),
    "MEMSYNC_SYNC_SCHEDULE": ("syncSchedule", "sync_schedule"),
    "MEMSYNC_EXPIRY_SCHEDULE": ("expirySchedule", "expiry_schedule"),
    "MEMSYNC_EXPIRY_THRESHOLDS_DAYS": ("expiryThresholdsDays", "expiry_thresholds_days"),
    "MEMSYNC_ALERT_WEBHOOK_URL": ("alertWebhookUrl", "alert_webhook_url"),
    "MEMSYNC_ALERT_WEBHOOK_FORMAT": ("alertWebhookFormat", "alert_webhook_format"),
}


def declared() -> set[str]:
    return set(SETTING_NAMES.values())


def sample_settings() -> dict[str, str]:
    return json.loads((ROOT / "local.settings.sample.json").read_text(encoding="utf-8"))["Values"]


def as_setting_text(value: object) -> str:
    """A settings default as the text an app setting would hold."""
    if value is None:
        return ""
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def test_every_declared_setting_is_in_the_local_sample():
    missing = declared() - set(sample_settings())
    assert not missing, f"add to local.settings.sample.json: {sorted(missing)}"


def test_the_local_sample_declares_nothing_the_settings_module_does_not_read():
    unknown = {k for k in sample_settings() if OURS.match(k)} - declared() - HOST_ONLY
    assert not unknown, f"local.settings.sample.json has settings shared/settings.py lacks: {unknown}"


def test_every_declared_setting_that_applies_in_azure_is_a_bicep_app_setting():
    expected = declared() - LOCAL_ONLY - OUTSIDE_AZURE_IDENTITY
    missing = expected - set(bicep.app_settings())
    assert not missing, f"add to appSettings in infra/modules/function-app.bicep: {sorted(missing)}"


def test_every_memsync_or_storage_app_setting_in_bicep_is_declared():
    ours = {name for name in bicep.app_settings() if OURS.match(name)}
    unknown = ours - declared() - HOST_ONLY
    assert not unknown, f"Bicep sets settings that shared/settings.py does not declare: {sorted(unknown)}"


def test_the_documented_exceptions_stay_out_of_azure():
    in_bicep = set(bicep.app_settings())
    assert not in_bicep & LOCAL_ONLY, "no storage connection string in Azure: shared-key access is off"
    assert not in_bicep & OUTSIDE_AZURE_IDENTITY, "in Azure memsync is its system-assigned managed identity"
    # The exceptions are real names of the settings module, not stale strings.
    assert declared() >= LOCAL_ONLY | OUTSIDE_AZURE_IDENTITY
    assert set(TUNABLE) <= declared()


def test_the_bicep_app_settings_alone_start_memsync_with_identity_based_storage():
    """What Azure hands the worker (placeholder values for Bicep expressions) passes `load_settings`."""
    placeholders = {
        "AzureWebJobsStorage__accountName": "stmemsyncabc",
        "AzureWebJobsStorage__queueServiceUri": "https://stmemsyncabc.queue.core.windows.net",
        "AzureWebJobsStorage__tableServiceUri": "https://stmemsyncabc.table.core.windows.net",
        "MEMSYNC_KEY_VAULT_URL": "https://kv-memsync-abc.vault.azure.net/",
    }
    defaults = {setting: as_setting_text(Settings.model_fields[field].default)
                for setting, (_, field) in TUNABLE.items()}
    env = {name: placeholders.get(name, defaults.get(name, "")) for name in bicep.app_settings()}
    settings = load_settings(env)
    assert settings.storage_connection_string is None
    assert settings.storage_account_name == "stmemsyncabc"
    assert settings.storage_table_service_uri == "https://stmemsyncabc.table.core.windows.net"
    assert settings.key_vault_url == "https://kv-memsync-abc.vault.azure.net"


@pytest.mark.parametrize("setting", sorted(TUNABLE))
def test_each_tunable_setting_is_fed_by_a_parameter_whose_default_is_the_settings_default(setting):
    param, field = TUNABLE[setting]
    feeder = "hasAlertWebhook" if setting == "MEMSYNC_ALERT_WEBHOOK_URL" else param
    assert bicep.app_settings()[setting].split(" ?")[0] == feeder
    assert feeder in bicep.load(bicep.INFRA / "modules" / "function-app.bicep").params
    expected = as_setting_text(Settings.model_fields[field].default)
    for name in ("main.bicep", "resources.bicep"):
        declared_param = bicep.load(bicep.INFRA / name).params.get(param)
        assert declared_param is not None, f"infra/{name} lacks param {param} (for {setting})"
        assert bicep.literal(declared_param.default or "''") == expected, (
            f"infra/{name} param {param} defaults to {declared_param.default}, settings to {expected!r}")


def test_the_webhook_url_is_a_secure_parameter_kept_in_key_vault():
    for name in ("main.bicep", "resources.bicep", "modules/keyvault.bicep"):
        assert bicep.load(bicep.INFRA / name).params["alertWebhookUrl"].secure, name
    value = bicep.app_settings()["MEMSYNC_ALERT_WEBHOOK_URL"]
    assert "@Microsoft.KeyVault(" in value
    assert "alertWebhookUrl" not in value, "the URL itself must never be an app setting value"


def test_allowed_values_are_the_settings_modules():
    for name in ("main.bicep", "resources.bicep"):
        params = bicep.load(bicep.INFRA / name).params
        assert params["cloud"].allowed == [c.value for c in CloudName], name
        assert params["alertWebhookFormat"].allowed == list(typing.get_args(WebhookFormat)), name


def test_azd_parameters_map_environment_variables_to_the_same_settings_with_the_same_defaults():
    parameters = json.loads((bicep.INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    main_params = bicep.load(bicep.INFRA / "main.bicep").params
    assert set(parameters) <= set(main_params), "main.parameters.json passes a parameter main.bicep lacks"
    for setting, (param, field) in TUNABLE.items():
        m = re.fullmatch(r"\$\{(\w+)(?:=([^}]*))?\}", parameters[param]["value"])
        assert m, f"{param}: expected ${{{setting}}} or ${{{setting}=default}}"
        assert m[1] == setting, f"{param} reads ${{{m[1]}}}, not ${{{setting}}}"
        if m[2] is not None:
            assert m[2] == as_setting_text(Settings.model_fields[field].default), param


def test_modules_receive_exactly_the_parameters_they_declare():
    """What a compiler would catch: a misspelt or missing module parameter, or an unknown output."""
    for f in bicep.all_files():
        for symbol, (path, passed) in f.modules.items():
            target = bicep.load((f.path.parent / path).resolve())
            unknown = set(passed) - set(target.params)
            assert not unknown, f"{f.path.name} module {symbol} passes unknown params {unknown}"
            required = {n for n, p in target.params.items() if p.default is None}
            assert required <= set(passed), f"{f.path.name} module {symbol} misses {required - set(passed)}"
        for symbol, output in re.findall(r"\b(\w+)\.outputs\.(\w+)", f.text):
            target = bicep.load((f.path.parent / f.modules[symbol][0]).resolve())
            assert output in target.outputs, f"{f.path.name}: {symbol}.outputs.{output} does not exist"


def test_outputs_give_the_host_name_and_the_vault_url():
    outputs = bicep.load(bicep.INFRA / "resources.bicep").outputs
    assert outputs["functionAppHostName"] == "functionApp.outputs.defaultHostName"
    assert outputs["keyVaultUrl"] == "vault.outputs.vaultUri"
    main_outputs = bicep.load(bicep.INFRA / "main.bicep").outputs
    assert main_outputs["FUNCTION_APP_HOST_NAME"] == "resources.outputs.functionAppHostName"
    assert main_outputs["KEY_VAULT_URL"] == "resources.outputs.keyVaultUrl"


def test_every_setting_a_binding_names_exists_in_azure():
    """`%MEMSYNC_SYNC_SCHEDULE%` in a timer and `connection="AzureWebJobsStorage"` on a queue trigger are
    resolved by the host from app settings: a name missing in Azure stops the function from indexing."""
    settings = set(bicep.app_settings())
    for source in sorted((ROOT / "functions").glob("*.py")):
        text = source.read_text(encoding="utf-8")
        for name in re.findall(r"%(\w+)%", text):
            assert name in settings, f"{source.name} binds %{name}% but Bicep does not set it"
        for name in re.findall(r"\bconnection\s*=\s*[\"'](\w+)[\"']", text):
            assert name in settings or f"{name}__accountName" in settings, (
                f"{source.name} binds connection {name!r}: set {name}__accountName (identity-based) in Bicep")
