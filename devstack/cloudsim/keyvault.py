"""Key Vault secrets (REST 7.x), with the challenge-based authentication the SDK expects
(https://learn.microsoft.com/azure/key-vault/general/authentication-requests-and-responses).

The vault answers at ``https://localhost:PORT/`` (Host-header routing): azure-keyvault-secrets
parses secret ids as ``/{collection}/{name}[/{version}]`` so the vault cannot sit under a path
prefix. ``/vault`` on 127.0.0.1 serves the same store for plain HTTP clients.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .context import RequestContext
from .errors import json_response, key_vault_error
from .model import KEY_VAULT, RESOURCE_APP_IDS
from .odata import ODataError, decode_skiptoken, encode_skiptoken
from .tokens import TokenRejected

AUDIENCES = frozenset({KEY_VAULT, RESOURCE_APP_IDS[KEY_VAULT]})
_NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
RECOVERABLE_DAYS = 90


@dataclass
class SecretVersion:
    version: str
    value: str
    content_type: str | None
    tags: dict[str, str] | None
    enabled: bool
    exp: int | None
    nbf: int | None
    created: int
    updated: int


@dataclass
class StoredSecret:
    name: str
    versions: list[SecretVersion] = field(default_factory=list)
    deleted_date: int | None = None


class VaultStore:
    def __init__(self) -> None:
        self.secrets: dict[str, StoredSecret] = {}

    def live(self, name: str) -> StoredSecret | None:
        secret = self.secrets.get(name.lower())
        return secret if secret is not None and secret.deleted_date is None else None

    def deleted(self, name: str) -> StoredSecret | None:
        secret = self.secrets.get(name.lower())
        return secret if secret is not None and secret.deleted_date is not None else None


def _attributes(version: SecretVersion) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "enabled": version.enabled,
        "created": version.created,
        "updated": version.updated,
        "recoveryLevel": "Recoverable+Purgeable",
        "recoverableDays": RECOVERABLE_DAYS,
    }
    if version.exp is not None:
        attrs["exp"] = version.exp
    if version.nbf is not None:
        attrs["nbf"] = version.nbf
    return attrs


def _bundle(base: str, secret: StoredSecret, version: SecretVersion, *, with_value: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"id": f"{base}/secrets/{secret.name}/{version.version}", "attributes": _attributes(version)}
    if with_value:
        body["value"] = version.value
    if version.content_type is not None:
        body["contentType"] = version.content_type
    if version.tags is not None:
        body["tags"] = version.tags
    return body


def _deleted_bundle(base: str, secret: StoredSecret) -> dict[str, Any]:
    latest = secret.versions[-1]
    body = _bundle(base, secret, latest)
    body["recoveryId"] = f"{base}/deletedsecrets/{secret.name}"
    body["deletedDate"] = secret.deleted_date
    body["scheduledPurgeDate"] = (secret.deleted_date or 0) + RECOVERABLE_DAYS * 86400
    return body


def _not_found(name: str) -> web.Response:
    return key_vault_error(
        404,
        "SecretNotFound",
        f"A secret with (name/id) {name} was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182",
    )


def _paged(ctx: RequestContext, items: list[dict[str, Any]], list_path: str) -> web.Response:
    query = ctx.request.query
    try:
        size = max(1, min(int(query.get("maxresults", 25)), 25))
        offset = decode_skiptoken(query["$skiptoken"]) if "$skiptoken" in query else 0
    except (ValueError, ODataError):
        return key_vault_error(400, "BadParameter", "Invalid paging parameters.")
    chunk = items[offset : offset + size]
    next_link = None
    if offset + size < len(items):
        api_version = query.get("api-version", "7.5")
        next_link = f"{ctx.base_url}/{list_path}?api-version={api_version}&$skiptoken={encode_skiptoken(offset + size)}&maxresults={size}"
    return json_response({"value": chunk, "nextLink": next_link})


async def handle(ctx: RequestContext) -> web.StreamResponse:
    server = ctx.server
    sim = server.sim
    authorization = ctx.request.headers.get("Authorization")
    challenge = f'Bearer authorization="{ctx.origin.replace("localhost", "127.0.0.1")}/{sim.host_tenant_id}", resource="{KEY_VAULT}"'
    if not authorization:
        return key_vault_error(
            401,
            "Unauthorized",
            "AKV10000: Request is missing a Bearer or PoP token.",
            headers={"WWW-Authenticate": challenge},
        )
    try:
        principal = server.tokens.validate(authorization, AUDIENCES)
    except TokenRejected as exc:
        return key_vault_error(
            401,
            "Unauthorized",
            f"AKV10022: Invalid audience or token. {exc.message}",
            headers={"WWW-Authenticate": challenge},
        )
    ctx.tenant_id = principal.tenant_id
    ctx.app_id = principal.app_id
    if principal.tenant_id != sim.host_tenant_id:
        return key_vault_error(
            401,
            "Unauthorized",
            "AKV10032: Invalid issuer. Expected the vault's tenant.",
            headers={"WWW-Authenticate": challenge},
        )
    if principal.app_id != sim.host_app_id:
        return key_vault_error(
            403,
            "Forbidden",
            f"Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\nCaller: appid={principal.app_id};oid={uuid.uuid5(uuid.NAMESPACE_URL, principal.app_id)}\r\nVault: cloudsim",
            inner="ForbiddenByRbac",
        )
    blocked = await server.gate(ctx, None)
    if blocked is not None:
        return blocked
    return await _route(ctx, server.vault)


async def _route(ctx: RequestContext, store: VaultStore) -> web.StreamResponse:
    method = ctx.request.method
    segments = [s for s in ctx.path.split("/") if s]
    base = ctx.base_url
    now = int(time.time())
    ctx.route = "vault." + (segments[0] if segments else "root")
    if segments and segments[0] == "secrets":
        if len(segments) == 1 and method == "GET":
            items = []
            for secret in sorted(store.secrets.values(), key=lambda s: s.name):
                if secret.deleted_date is None:
                    item = _bundle(base, secret, secret.versions[-1], with_value=False)
                    item["id"] = f"{base}/secrets/{secret.name}"
                    items.append(item)
            return _paged(ctx, items, "secrets")
        name = segments[1] if len(segments) > 1 else ""
        if not _NAME.match(name):
            return key_vault_error(400, "BadParameter", f"The request URI contains an invalid name: {name}")
        if len(segments) == 2 and method == "PUT":
            return await _set(ctx, store, name, now)
        if len(segments) == 2 and method == "DELETE":
            secret = store.live(name)
            if secret is None:
                return _not_found(name)
            secret.deleted_date = now
            return json_response(_deleted_bundle(base, secret))
        if len(segments) == 3 and segments[2] == "versions" and method == "GET":
            secret = store.live(name)
            if secret is None:
                return _not_found(name)
            items = [_bundle(base, secret, v, with_value=False) for v in secret.versions]
            return _paged(ctx, items, f"secrets/{secret.name}/versions")
        if len(segments) in (2, 3) and method in ("GET", "PATCH"):
            secret = store.live(name)
            if secret is None:
                return _not_found(name)
            version_id = segments[2] if len(segments) == 3 else ""
            version = (
                secret.versions[-1]
                if not version_id
                else next((v for v in secret.versions if v.version == version_id), None)
            )
            if version is None:
                return _not_found(f"{name}/{version_id}")
            if method == "PATCH":
                return await _update(ctx, secret, version, now)
            return json_response(_bundle(base, secret, version))
    if segments and segments[0] == "deletedsecrets":
        if len(segments) == 1 and method == "GET":
            items = [
                _deleted_bundle(base, s)
                for s in sorted(store.secrets.values(), key=lambda s: s.name)
                if s.deleted_date is not None
            ]
            for item in items:
                item.pop("value", None)
            return _paged(ctx, items, "deletedsecrets")
        name = segments[1] if len(segments) > 1 else ""
        secret = store.deleted(name)
        if secret is None:
            return key_vault_error(404, "SecretNotFound", f"Deleted Secret not found: {name}")
        if len(segments) == 2 and method == "GET":
            body = _deleted_bundle(base, secret)
            body.pop("value", None)
            return json_response(body)
        if len(segments) == 2 and method == "DELETE":
            del store.secrets[secret.name.lower()]
            return web.Response(status=204)
        if len(segments) == 3 and segments[2] == "recover" and method == "POST":
            secret.deleted_date = None
            body = _bundle(base, secret, secret.versions[-1])
            body.pop("value", None)
            return json_response(body)
    return key_vault_error(404, "NotFound", f"The requested resource {ctx.path} was not found.")


async def _json_body(ctx: RequestContext) -> dict[str, Any] | None:
    try:
        body = await ctx.request.json()
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


async def _set(ctx: RequestContext, store: VaultStore, name: str, now: int) -> web.Response:
    body = await _json_body(ctx)
    if body is None or not isinstance(body.get("value"), str):
        return key_vault_error(400, "BadParameter", "Property value is required and must be a string.")
    if store.deleted(name) is not None:
        # Soft delete: a deleted name cannot take a new version until it is recovered or purged
        # (https://learn.microsoft.com/azure/key-vault/general/soft-delete-overview). Key Vault answers 409,
        # code Conflict, innererror.code ObjectIsDeletedButRecoverable (what the Azure SDK for .NET's sample
        # https://github.com/Azure/azure-sdk-for-net/blob/main/sdk/keyvault/Azure.Security.KeyVault.Secrets/samples/Sample4_ErrorResponse.md
        # parses), with the message `az keyvault secret set` prints for it.
        return key_vault_error(
            409,
            "Conflict",
            f"Secret {name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the secret can only be recovered or purged.",
            inner="ObjectIsDeletedButRecoverable",
        )
    attrs = body.get("attributes") or {}
    secret = store.secrets.setdefault(name.lower(), StoredSecret(name=name))
    version = SecretVersion(
        version=uuid.uuid4().hex,
        value=body["value"],
        content_type=body.get("contentType"),
        tags=body.get("tags"),
        enabled=bool(attrs.get("enabled", True)),
        exp=attrs.get("exp"),
        nbf=attrs.get("nbf"),
        created=now,
        updated=now,
    )
    secret.versions.append(version)
    return json_response(_bundle(ctx.base_url, secret, version))


async def _update(ctx: RequestContext, secret: StoredSecret, version: SecretVersion, now: int) -> web.Response:
    body = await _json_body(ctx)
    if body is None:
        return key_vault_error(400, "BadParameter", "The request body is not valid JSON.")
    attrs = body.get("attributes") or {}
    if "enabled" in attrs:
        version.enabled = bool(attrs["enabled"])
    if "exp" in attrs:
        version.exp = attrs["exp"]
    if "nbf" in attrs:
        version.nbf = attrs["nbf"]
    if "contentType" in body:
        version.content_type = body["contentType"]
    if "tags" in body:
        version.tags = body["tags"]
    version.updated = now
    out = _bundle(ctx.base_url, secret, version)
    out.pop("value", None)
    return json_response(out)
