import json
from pathlib import Path

import pytest

from shared.clouds import CLOUDS, CloudName
from shared.settings import SETTING_NAMES, SettingsError, load_settings

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
BASE = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "MEMSYNC_KEY_VAULT_URL": "https://kv.vault.azure.net/"}


def test_defaults_are_the_contracts():
    s = load_settings(BASE)
    assert s.cloud_name is CloudName.PUBLIC
    assert s.sync_schedule == "0 0 */6 * * *"
    assert s.expiry_schedule == "0 0 7 * * *"
    assert s.expiry_thresholds_days == (30, 14, 7, 3, 1, 0)
    assert s.alert_webhook_url is None
    assert s.graph_url == "https://graph.microsoft.com"
    assert s.authority_host == "https://login.microsoftonline.com"
    assert s.key_vault_url == "https://kv.vault.azure.net"
    assert s.authority_is_microsoft


@pytest.mark.parametrize("cloud", list(CloudName))
def test_each_cloud_picks_its_endpoints_and_keeps_its_audiences(cloud):
    s = load_settings({**BASE, "MEMSYNC_CLOUD": cloud.value})
    c = CLOUDS[cloud]
    assert (s.authority_host, s.graph_url, s.defender_url, s.partner_center_url) == (
        c.authority_host, c.graph_url, c.defender_url, c.partner_center_url)
    assert s.cloud.graph_scope.endswith("/.default")


def test_overrides_win_but_scopes_stay_the_clouds_own():
    s = load_settings({**BASE, "MEMSYNC_GRAPH_URL": "https://127.0.0.1:8443/graph/",
                       "MEMSYNC_AUTHORITY_HOST": "https://127.0.0.1:8443"})
    assert s.graph_url == "https://127.0.0.1:8443/graph"
    assert s.cloud.graph_scope == "https://graph.microsoft.com/.default"
    assert not s.authority_is_microsoft  # instance discovery goes off


@pytest.mark.parametrize(("env", "named"), [
    ({"AzureWebJobsStorage": "x"}, "MEMSYNC_KEY_VAULT_URL is required"),
    ({"MEMSYNC_KEY_VAULT_URL": "https://kv.vault.azure.net"}, "AzureWebJobsStorage is required"),
    ({**BASE, "MEMSYNC_CLOUD": "mars"}, "MEMSYNC_CLOUD"),
    ({**BASE, "MEMSYNC_EXPIRY_THRESHOLDS_DAYS": "30,soon"}, "MEMSYNC_EXPIRY_THRESHOLDS_DAYS"),
    ({**BASE, "MEMSYNC_GRAPH_URL": "http://graph.example"}, "MEMSYNC_GRAPH_URL"),
    ({**BASE, "MEMSYNC_ALERT_WEBHOOK_FORMAT": "email"}, "MEMSYNC_ALERT_WEBHOOK_FORMAT"),
])
def test_a_bad_or_missing_setting_fails_naming_it(env, named):
    with pytest.raises(SettingsError, match=named):
        load_settings(env)


def test_identity_based_storage_is_enough_without_a_connection_string():
    s = load_settings({"AzureWebJobsStorage__accountName": "memsyncstore",
                       "MEMSYNC_KEY_VAULT_URL": "https://kv.vault.azure.net"})
    assert s.storage_connection_string is None


def test_thresholds_parse_sort_and_dedupe():
    s = load_settings({**BASE, "MEMSYNC_EXPIRY_THRESHOLDS_DAYS": " 1, 30,7,7 "})
    assert s.expiry_thresholds_days == (30, 7, 1)


def test_sample_settings_list_exactly_the_declared_names():
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    declared = set(SETTING_NAMES.values())
    assert declared <= set(sample), f"missing from the sample: {declared - set(sample)}"
    assert set(sample) - declared == {"FUNCTIONS_WORKER_RUNTIME"}


def test_the_sync_budget_is_a_setting_within_the_function_timeout():
    base = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "MEMSYNC_KEY_VAULT_URL": "https://kv.vault.azure.net"}
    assert load_settings(base).sync_budget_seconds == 480.0  # as before the setting existed
    assert load_settings({**base, "MEMSYNC_SYNC_BUDGET_SECONDS": "120"}).sync_budget_seconds == 120.0
    for bad in ("10", "600", "soon"):  # host.json's functionTimeout is 10 minutes; the final writes need time
        with pytest.raises(SettingsError, match="MEMSYNC_SYNC_BUDGET_SECONDS"):
            load_settings({**base, "MEMSYNC_SYNC_BUDGET_SECONDS": bad})


async def test_the_worker_reads_for_the_configured_budget(monkeypatch):
    from azure.functions.queue import QueueMessage

    import functions.sync as worker
    from functions.runtime import runtime as holder
    from shared.services import tenant_sync

    seen: dict = {}

    async def fake_sync(rt, job, *, attempt, budget_seconds):
        seen.update(attempt=attempt, budget=budget_seconds)
        return tenant_sync.SyncResult("ok")

    base = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "MEMSYNC_KEY_VAULT_URL": "https://kv.vault.azure.net",
            "MEMSYNC_SYNC_BUDGET_SECONDS": "90"}
    monkeypatch.setattr(holder, "_runtime", type("Rt", (), {"settings": load_settings(base)})())
    monkeypatch.setattr(tenant_sync, "sync_tenant", fake_sync)
    body = b'{"integrationId": "a0000000-0000-4000-8000-000000000001", "tenantId": ' \
           b'"b0000000-0000-4000-8000-000000000002", "runId": "r1", "trigger": "schedule"}'
    message = QueueMessage(body=body, dequeue_count=2)  # what the host hands over on a redelivery
    await worker.sync_tenant._function.get_user_function()(message)
    assert seen == {"attempt": 2, "budget": 90.0}
