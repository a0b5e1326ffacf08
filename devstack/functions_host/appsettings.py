"""App settings: ``%NAME%`` binding expressions, local.settings.json, storage connections."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, MutableMapping
from pathlib import Path

log = logging.getLogger("devstack.functions_host")

_SETTING_RE = re.compile(r"%([^%]+)%")


class MissingSettingError(KeyError):
    """A ``%NAME%`` expression or a connection names an app setting that is not defined."""

    def __init__(self, name: str, where: str) -> None:
        super().__init__(name)
        self.name = name
        self.where = where

    def __str__(self) -> str:
        return f"{self.where}: app setting '{self.name}' is not defined (environment / local.settings.json)"


def resolve_setting_expr(value: str, env: Mapping[str, str], where: str = "binding") -> str:
    """Replace each ``%NAME%`` with the app setting NAME.

    https://learn.microsoft.com/azure/azure-functions/functions-bindings-expressions-patterns#binding-expressions---app-settings
    """

    def _sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in env:
            raise MissingSettingError(name, where)
        return env[name]

    return _SETTING_RE.sub(_sub, value)


def apply_local_settings(app_dir: Path, env: MutableMapping[str, str] | None = None) -> list[str]:
    """Copy ``Values`` of DIR/local.settings.json into the environment, as Core Tools does.

    Like Core Tools, a variable already in the environment wins (it prints "Skipping 'X'
    from local settings as it's already defined in current environment variables.").
    Returns the names applied.
    https://learn.microsoft.com/azure/azure-functions/functions-develop-local#local-settings-file
    """
    env = os.environ if env is None else env
    path = app_dir / "local.settings.json"
    if not path.exists():
        return []
    data = json.loads(path.read_text(encoding="utf-8-sig"))
    applied: list[str] = []
    for key, value in (data.get("Values") or {}).items():
        if key in env:
            log.info(
                "Skipping '%s' from local settings as it's already defined in current environment variables.",
                key,
            )
            continue
        env[key] = "" if value is None else str(value)
        applied.append(key)
    return applied


# Well-known Azurite account, used when a connection is "UseDevelopmentStorage=true".
# https://learn.microsoft.com/azure/storage/common/storage-use-azurite#connection-strings
_DEV_ACCOUNT = "devstoreaccount1"
_DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def expand_development_storage(conn: str, env: Mapping[str, str]) -> str:
    """Turn ``UseDevelopmentStorage=true`` into an explicit Azurite connection string.

    The SDKs accept the shorthand themselves, but always with ports 10000-10002; expanding
    it here lets AZURITE_*_PORT move the emulator (parallel test runs).
    """
    parts = _parse_conn(conn)
    if parts.get("usedevelopmentstorage", "").lower() != "true":
        return conn
    proxy = parts.get("developmentstorageproxyuri", "http://127.0.0.1").rstrip("/")
    # Strip a port from the proxy uri; we add the per-service ports.
    proxy = re.sub(r":\d+$", "", proxy)
    blob = env.get("AZURITE_BLOB_PORT", "10000")
    queue = env.get("AZURITE_QUEUE_PORT", "10001")
    table = env.get("AZURITE_TABLE_PORT", "10002")
    return (
        f"DefaultEndpointsProtocol=http;AccountName={_DEV_ACCOUNT};AccountKey={_DEV_KEY};"
        f"BlobEndpoint={proxy}:{blob}/{_DEV_ACCOUNT};"
        f"QueueEndpoint={proxy}:{queue}/{_DEV_ACCOUNT};"
        f"TableEndpoint={proxy}:{table}/{_DEV_ACCOUNT};"
    )


def _parse_conn(conn: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in conn.split(";"):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip().lower()] = v.strip()
    return out


def storage_connection_string(connection: str | None, env: Mapping[str, str], where: str) -> str:
    """Resolve a binding's ``connection`` (an app-setting name) to a connection string.

    An empty connection means AzureWebJobsStorage. The real host also looks up
    ``AzureWebJobs<NAME>`` and identity-based ``<NAME>__queueServiceUri`` settings; only the
    former is supported here (identity-based connections need Azure AD).
    https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue#connections
    """
    name = connection or "AzureWebJobsStorage"
    for candidate in (name, f"AzureWebJobs{name}"):
        value = env.get(candidate)
        if value:
            return expand_development_storage(value, env)
    if env.get(f"{name}__queueServiceUri") or env.get(f"{name}__serviceUri"):
        raise MissingSettingError(
            name, f"{where}: identity-based connections are not supported by the local host; set"
        )
    raise MissingSettingError(name, where)
