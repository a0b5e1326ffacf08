"""The ``/_sim`` control API: scenario facts, request log, ground truth, mutations, faults, limits."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .context import RequestContext
from .errors import json_response, sim_error
from .generate import (
    AutopilotFactory,
    DeviceFactory,
    EntraDeviceFactory,
    generate_machines,
    machine_facts,
    machine_for_device,
    server_machine,
    subscribed_sku,
    vulnerabilities_for_machine,
    vulnerability_record,
)
from .model import RESOURCE_SHORT_NAMES, AppRegistration, TenantState, canonical_resource
from .timeutil import iso_seconds, parse_datetime, utcnow

if TYPE_CHECKING:
    from .server import SimServer

ZERO_GUID = "00000000-0000-0000-0000-000000000000"


class BadInput(ValueError):
    pass


def app_json(app: AppRegistration, key: str | None = None) -> dict[str, Any]:
    return {
        "key": key,
        "appId": app.app_id,
        "objectId": app.object_id,
        "displayName": app.display_name,
        "homeTenantId": app.home_tenant_id,
        "disabled": app.disabled,
        "secrets": [
            {
                "keyId": s.key_id,
                "displayName": s.display_name,
                "hint": s.hint,
                "value": s.value,
                "startDateTime": iso_seconds(s.start),
                "endDateTime": iso_seconds(s.end),
            }
            for s in app.secrets
        ],
    }


def matched_defender_devices(tenant: TenantState) -> int:
    if not tenant.defender_licensed:
        return 0
    aad_ids = {m.get("aadDeviceId") for m in tenant.machines.values() if m.get("aadDeviceId")}
    return sum(
        1
        for d in tenant.devices.values()
        if d.get("azureADDeviceId") not in (None, "", ZERO_GUID) and d["azureADDeviceId"] in aad_ids
    )


def tenant_summary(tenant: TenantState) -> dict[str, Any]:
    return {
        "key": tenant.key,
        "tenantId": tenant.tenant_id,
        "displayName": tenant.display_name,
        "defaultDomainName": tenant.default_domain,
        "relationship": tenant.relationship,
        "exists": tenant.exists,
        "intuneLicensed": tenant.intune_licensed,
        "defenderLicensed": tenant.defender_licensed,
        "forcedTokenError": tenant.forced_token_error,
        "deviceCount": len(tenant.devices),
        "appCount": len(tenant.detected_apps),
        "defenderMachineCount": len(tenant.machines) if tenant.defender_licensed else 0,
        "autopilotDeviceCount": len(tenant.autopilot),
        "entraDeviceCount": len(tenant.entra_devices),
        # What /api/vulnerabilities/machinesVulnerabilities lists (nothing without Defender, as for machines).
        "vulnerabilityCount": len(tenant.vulnerabilities) if tenant.defender_licensed else 0,
        "subscribedSkuCount": len(tenant.subscribed_skus),
        "matchedDefenderDevices": matched_defender_devices(tenant),
        "consents": {
            app_id: {res: sorted(roles) for res, roles in grants.items()} for app_id, grants in tenant.consents.items()
        },
        "gdapRelationships": tenant.gdap_relationships,
        "expected": tenant.expected,
    }


def scenario_json(server: SimServer) -> dict[str, Any]:
    sim = server.sim
    host_app = sim.apps[sim.host_app_id]
    partner = sim.tenants[sim.partner_tenant_id]
    keys = {v: k for k, v in sim.app_keys.items()}
    return {
        "name": sim.name,
        "seed": sim.seed,
        "hostIdentity": {
            "tenantId": sim.host_tenant_id,
            "clientId": sim.host_app_id,
            "clientSecret": host_app.secrets[0].value,
        },
        "partner": {
            "tenantId": partner.tenant_id,
            "displayName": partner.display_name,
            "defaultDomainName": partner.default_domain,
        },
        "apps": [app_json(a, keys.get(a.app_id)) for a in sim.apps.values()],
        "registrations": sim.registrations,
        "tenants": [tenant_summary(sim.tenants[tid]) for tid in sim.reported_tenants],
        "options": sim.options,
        "limitsEnabled": server.limiter.enabled,
    }


async def _body(ctx: RequestContext) -> dict[str, Any]:
    if not ctx.request.can_read_body:
        return {}
    try:
        body = await ctx.request.json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadInput("body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise BadInput("body must be a JSON object")
    return body


def _tenant(server: SimServer, tenant_id: str) -> TenantState:
    tenant = server.sim.resolve_tenant(tenant_id)
    if tenant is None:
        raise LookupError(f"tenant {tenant_id} not found")
    return tenant


def _prefix(tenant: TenantState) -> str:
    return "".join(ch for ch in tenant.key.upper() if ch.isalpha())[:4] or "DEV"


def _factory(server: SimServer, tenant: TenantState) -> DeviceFactory:
    return DeviceFactory(server.sim.rng, tenant.default_domain, utcnow(), _prefix(tenant) + "N")


def _recount(tenant: TenantState, app_ids: list[str] | None = None) -> None:
    for app_id in app_ids if app_ids is not None else list(tenant.app_devices):
        if app_id in tenant.detected_apps:
            tenant.detected_apps.update(app_id, {"deviceCount": len(tenant.app_devices.get(app_id, []))})


async def handle(ctx: RequestContext) -> web.StreamResponse:
    try:
        return await _route(ctx)
    except BadInput as exc:
        return sim_error(400, str(exc))
    except LookupError as exc:
        return sim_error(404, str(exc).strip("'\""))
    except (TypeError, ValueError, KeyError) as exc:
        return sim_error(400, f"bad input: {exc}")


_ENTITY = re.compile(
    r"^/tenants/([^/]+)/(managedDevices|detectedApps|machines|windowsAutopilotDeviceIdentities|entraDevices"
    r"|subscribedSkus)(?:/([^/]+))?$"
)
_VULNERABILITIES = re.compile(r"^/tenants/([^/]+)/machinesVulnerabilities(?:/([^/]+))?$")
_CONSENT = re.compile(r"^/tenants/([^/]+)/consents/([^/]+)$")
_SECRETS = re.compile(r"^/apps/([^/]+)/secrets(?:/([^/]+))?$")
_EXPORT = re.compile(r"^/exports/([^/]+)/([^/]+)\.zip$")


async def _route(ctx: RequestContext) -> web.StreamResponse:
    server = ctx.server
    method = ctx.request.method
    path = ctx.path.rstrip("/") or "/"
    query = ctx.request.query
    if path == "/scenario" and method == "GET":
        return json_response(scenario_json(server))
    if path == "/reset" and method == "POST":
        server.reset()
        return json_response({"reset": True, "scenario": server.sim.name})
    if path == "/requests":
        if method == "DELETE":
            server.log.clear()
            return web.Response(status=204)
        if method == "GET":
            since = int(query.get("since", "0") or 0)
            entries = server.log.query(service=query.get("service"), tenant_id=query.get("tenantId"), since=since)
            return json_response({"value": entries, "lastSeq": server.log.seq})
    if path == "/counters" and method == "GET":
        return json_response(server.log.counters())
    if path == "/faults":
        if method == "GET":
            return json_response({"rules": [r.to_json() for r in server.faults.rules]})
        if method == "DELETE":
            server.faults.clear()
            return web.Response(status=204)
        if method == "POST":
            body = await _body(ctx)
            rules = body.get("rules")
            if not isinstance(rules, list):
                raise BadInput('body must be {"rules": [...]}')
            try:
                added = server.faults.add(rules)
            except ValueError as exc:
                raise BadInput(f"invalid fault rule: {exc}") from exc
            return json_response({"rules": [r.to_json() for r in added]}, status=201)
    if path == "/limits":
        if method == "PATCH":
            body = await _body(ctx)
            if "enabled" in body:
                server.limiter.enabled = bool(body["enabled"])
                server.limiter.reset()
            return json_response({"enabled": server.limiter.enabled})
        if method == "GET":
            return json_response({"enabled": server.limiter.enabled})
    if path == "/options":
        # Export-job behaviour may change at run time: how many polls a job needs, and how it ends.
        if method == "PATCH":
            body = await _body(ctx)
            if "exportJobPolls" in body:
                polls = body["exportJobPolls"]
                if isinstance(polls, bool) or not isinstance(polls, int) or polls < 1:
                    raise BadInput("exportJobPolls must be a whole number >= 1")
                server.sim.options["exportJobPolls"] = polls
            if "exportJobOutcome" in body:
                if body["exportJobOutcome"] not in ("completed", "failed"):
                    raise BadInput("exportJobOutcome must be completed or failed")
                server.sim.options["exportJobOutcome"] = body["exportJobOutcome"]
            return json_response(server.sim.options)
        if method == "GET":
            return json_response(server.sim.options)
    if path == "/refreshtokens" and method == "DELETE":
        # Every refresh token issued so far stops working (AADSTS70008), as after 90 idle days.
        revoked = len(server.refresh_tokens)
        server.refresh_tokens.clear()
        return json_response({"revoked": revoked})
    if path == "/devicelogin":
        return web.Response(text="cloudsim: device codes are approved automatically after the first poll.\n")
    match = _EXPORT.match(path)
    if match and method == "GET":
        tenant = _tenant(server, match.group(1))
        job = tenant.export_jobs.get(match.group(2))
        if job is None or job.blob is None:
            return web.Response(status=404, text="BlobNotFound")
        if query.get("sig") != job.blob_token:
            return web.Response(status=403, text="AuthenticationFailed")
        return web.Response(body=job.blob, content_type="application/x-zip-compressed")
    match = re.match(r"^/tenants/([^/]+)/truth$", path)
    if match and method == "GET":
        tenant = _tenant(server, match.group(1))
        return json_response(
            {
                "tenant": tenant_summary(tenant),
                "organization": tenant.organization(),
                "managedDevices": tenant.devices.values(),
                "detectedApps": tenant.detected_apps.values(),
                "appDevices": tenant.app_devices,
                "machines": tenant.machines.values(),
                "windowsAutopilotDeviceIdentities": tenant.autopilot.values(),
                "entraDevices": tenant.entra_devices.values(),
                "machinesVulnerabilities": tenant.vulnerabilities.values(),
                "subscribedSkus": tenant.subscribed_skus.values(),
            }
        )
    match = re.match(r"^/tenants/([^/]+)$", path)
    if match and method == "PATCH":
        tenant = _tenant(server, match.group(1))
        body = await _body(ctx)
        for name, attr in (
            ("intuneLicensed", "intune_licensed"),
            ("defenderLicensed", "defender_licensed"),
            ("exists", "exists"),
        ):
            if name in body:
                setattr(tenant, attr, bool(body[name]))
        if "forcedTokenError" in body:
            forced = body["forcedTokenError"]
            if forced is not None and not (isinstance(forced, dict) and isinstance(forced.get("code"), int)):
                raise BadInput('forcedTokenError must be null or {"code": int, "appId"?: str, "resource"?: str}')
            tenant.forced_token_error = forced
        if "displayName" in body:
            tenant.display_name = str(body["displayName"])
        if "relationship" in body:
            tenant.relationship = str(body["relationship"])
            tenant.partner_tenant_id = server.sim.partner_tenant_id if tenant.relationship in (
                "dap", "gdap", "both", "indirect", "reseller") else None
        if "gdap" in body:
            from .scenario import gdap_relationships
            from .timeutil import utcnow

            if not isinstance(body["gdap"], list):
                raise BadInput('gdap must be a list of {"roles", "status", "endInDays"|"endDateTime"}')
            tenant.gdap_relationships = gdap_relationships(tenant, body["gdap"], utcnow())
        if tenant.exists:
            server.sim.domains[tenant.default_domain.lower()] = tenant.tenant_id
        else:
            server.sim.domains.pop(tenant.default_domain.lower(), None)
        return json_response(tenant_summary(tenant))
    match = _CONSENT.match(path)
    if match:
        tenant = _tenant(server, match.group(1))
        app_id = match.group(2).lower()
        if method == "PUT":
            body = await _body(ctx)
            grants: dict[str, set[str]] = {}
            for resource_name, roles in (body.get("roles") or {}).items():
                resource = RESOURCE_SHORT_NAMES.get(resource_name) or canonical_resource(resource_name)
                if resource is None or not isinstance(roles, list):
                    raise BadInput(f"unknown resource {resource_name!r} or roles not a list")
                grants[resource] = {str(r) for r in roles}
            tenant.consents[app_id] = grants
            return json_response(tenant_summary(tenant)["consents"][app_id])
        if method == "DELETE":
            if tenant.consents.pop(app_id, None) is None:
                raise LookupError(f"app {app_id} has no consent in tenant {tenant.tenant_id}")
            return web.Response(status=204)
    match = _SECRETS.match(path)
    if match:
        return await _secrets(ctx, match.group(1).lower(), match.group(2))
    match = _ENTITY.match(path)
    if match:
        tenant = _tenant(server, match.group(1))
        return await _entities(ctx, tenant, match.group(2), match.group(3))
    match = _VULNERABILITIES.match(path)
    if match:
        tenant = _tenant(server, match.group(1))
        return await _vulnerabilities(ctx, tenant, match.group(2))
    return sim_error(404, f"unknown simulator route {method} /_sim{path}")


async def _secrets(ctx: RequestContext, app_id: str, key_id: str | None) -> web.Response:
    sim = ctx.server.sim
    app = sim.apps.get(app_id)
    if app is None:
        raise LookupError(f"app {app_id} not found")
    method = ctx.request.method
    if key_id is None and method == "POST":
        body = await _body(ctx)
        secret = sim.new_secret(
            app, expires_in_days=float(body.get("expiresInDays", 180)), display_name=str(body.get("displayName", ""))
        )
        return json_response(
            {
                "value": secret.value,
                "keyId": secret.key_id,
                "hint": secret.hint,
                "startDateTime": iso_seconds(secret.start),
                "endDateTime": iso_seconds(secret.end),
            },
            status=201,
        )
    if key_id is None and method == "GET":
        return json_response(app_json(app))
    secret = next((s for s in app.secrets if s.key_id == key_id), None)
    if secret is None:
        raise LookupError(f"secret {key_id} not found on app {app_id}")
    if method == "PATCH":
        body = await _body(ctx)
        if "endDateTime" in body:
            secret.end = parse_datetime(str(body["endDateTime"]))
        if "startDateTime" in body:
            secret.start = parse_datetime(str(body["startDateTime"]))
        return json_response(app_json(app))
    if method == "DELETE":
        app.secrets.remove(secret)
        return web.Response(status=204)
    return sim_error(405, "method not allowed")


async def _entities(ctx: RequestContext, tenant: TenantState, kind: str, entity_id: str | None) -> web.Response:
    method = ctx.request.method
    store = {
        "managedDevices": tenant.devices,
        "detectedApps": tenant.detected_apps,
        "machines": tenant.machines,
        "windowsAutopilotDeviceIdentities": tenant.autopilot,
        "entraDevices": tenant.entra_devices,
        "subscribedSkus": tenant.subscribed_skus,
    }[kind]
    if entity_id is None and method == "GET":
        return json_response({"value": store.values()})
    if entity_id is None and method == "POST":
        body = await _body(ctx)
        created = _create(ctx, tenant, kind, body)
        return json_response({"ids": created}, status=201)
    if entity_id is None:
        return sim_error(405, "method not allowed")
    if entity_id not in store:
        raise LookupError(f"{kind} {entity_id} not found in tenant {tenant.tenant_id}")
    if method == "GET":
        return json_response(store.get(entity_id))
    if method == "PATCH":
        body = await _body(ctx)
        fields = dict(body)
        if kind == "managedDevices" and "lastSyncDateTime" not in fields:
            fields["lastSyncDateTime"] = iso_seconds(utcnow())
        if kind == "machines" and "lastSeen" not in fields:
            fields["lastSeen"] = iso_seconds(utcnow())
        device_ids = fields.pop("deviceIds", None)
        if kind == "detectedApps" and isinstance(device_ids, list):
            tenant.app_devices[entity_id] = [str(d) for d in device_ids]
            fields["deviceCount"] = len(device_ids)
        return json_response(store.update(entity_id, fields))
    if method == "DELETE":
        store.remove(entity_id)
        if kind == "managedDevices":
            touched = [a for a, devices in tenant.app_devices.items() if entity_id in devices]
            for app_id in touched:
                tenant.app_devices[app_id] = [d for d in tenant.app_devices[app_id] if d != entity_id]
            _recount(tenant, touched)
        if kind == "detectedApps":
            tenant.app_devices.pop(entity_id, None)
        return web.Response(status=204)
    return sim_error(405, "method not allowed")


async def _vulnerabilities(ctx: RequestContext, tenant: TenantState, record_id: str | None) -> web.Response:
    """Defender's machinesVulnerabilities: listed, added (``{"forMachines": [machine ids]}`` gives each machine
    what outdated software would, ``{"vulnerabilities": [partial records]}`` adds those, completed from
    ``machineId``/``cveId``/...), and removed by id (every record with that id)."""
    method = ctx.request.method
    records = tenant.vulnerabilities
    if record_id is None and method == "GET":
        return json_response({"value": records.values()})
    if record_id is None and method == "POST":
        body = await _body(ctx)
        created: list[str] = []
        made: list[dict[str, Any]] = []
        for machine_id in body.get("forMachines") or []:
            machine = tenant.machines.get(str(machine_id))
            if machine is None:
                raise LookupError(f"machine {machine_id} not found")
            facts = machine_facts([machine])[0]
            found: list[dict[str, Any]] = []
            for _ in range(50):  # a machine whose platform has vulnerable software gets some
                found = vulnerabilities_for_machine(ctx.server.sim.rng, facts)
                if found:
                    break
            if not found:
                raise BadInput(f"machine {machine_id}: no vulnerable software is simulated for {facts[1]!r}")
            made.extend(found)
        partials = body.get("vulnerabilities") or []
        if not isinstance(partials, list):
            raise BadInput("vulnerabilities must be a list")
        for partial in partials:
            fields = {
                "machineId": next(iter(tenant.machines.ids()), "0" * 40),
                "cveId": "CVE-2024-0519",
                "productVendor": "microsoft",
                "productName": "edge_chromium-based",
                "productVersion": "120.0.2210.133",
                "fixingKbId": None,
                "severity": "High",
                **dict(partial),
            }
            record = vulnerability_record(
                fields["machineId"], fields["cveId"], fields["productVendor"], fields["productName"],
                fields["productVersion"], fields["fixingKbId"], fields["severity"],
            )
            made.append({**record, **({"id": partial["id"]} if "id" in partial else {})})
        for record in made:
            records.append(record)
            created.append(record["id"])
        return json_response({"ids": created}, status=201)
    if record_id is None:
        return sim_error(405, "method not allowed")
    found_records = records.find(record_id)
    if not found_records:
        raise LookupError(f"machinesVulnerabilities {record_id} not found in tenant {tenant.tenant_id}")
    if method == "GET":
        return json_response({"value": found_records})
    if method == "DELETE":
        records.remove(record_id)
        return web.Response(status=204)
    return sim_error(405, "method not allowed")


def _create(ctx: RequestContext, tenant: TenantState, kind: str, body: dict[str, Any]) -> list[str]:
    server = ctx.server
    rng = server.sim.rng
    count = int(body.get("count", 0))
    if count < 0 or count > 100_000:
        raise BadInput("count must be between 0 and 100000")
    created: list[str] = []
    if kind == "managedDevices":
        factory = _factory(server, tenant)
        partials = body.get("devices") or [{} for _ in range(count)]
        if not isinstance(partials, list):
            raise BadInput("devices must be a list")
        for partial in partials:
            device = factory.device(overrides=dict(partial))
            tenant.devices.add(device)
            created.append(device["id"])
            if body.get("withDefender") and tenant.defender_licensed:
                tenant.machines.add(machine_for_device(rng, device, utcnow()))
        return created
    if kind == "detectedApps":
        partials = body.get("apps") or [{} for _ in range(count)]
        if not isinstance(partials, list):
            raise BadInput("apps must be a list")
        devices = tenant.devices.ids()
        for partial in partials:
            app_id = str(partial.get("id") or f"{rng.getrandbits(176):044x}")
            device_ids = partial.get("deviceIds")
            if device_ids is None:
                device_ids = rng.sample(devices, min(len(devices), rng.randint(1, 5))) if devices else []
            app = {
                "@odata.type": "#microsoft.graph.detectedApp",
                "id": app_id,
                "displayName": partial.get("displayName", f"Simulated App {app_id[:6]}"),
                "version": partial.get("version", "1.0.0"),
                "sizeInByte": int(partial.get("sizeInByte", 0)),
                "deviceCount": len(device_ids),
                "platform": partial.get("platform", "windows"),
                "publisher": partial.get("publisher", "Cloudsim"),
            }
            tenant.detected_apps.add(app)
            tenant.app_devices[app_id] = [str(d) for d in device_ids]
            created.append(app_id)
        return created
    if kind == "windowsAutopilotDeviceIdentities":
        autopilot = AutopilotFactory(rng, _prefix(tenant), utcnow())
        identities = []
        for device_id in body.get("forDevices") or []:
            enrolled = tenant.devices.get(str(device_id))
            if enrolled is None:
                raise LookupError(f"managedDevice {device_id} not found")
            identities.append(autopilot.for_device(enrolled))
        partials = body.get("identities") or []
        if not isinstance(partials, list):
            raise BadInput("identities must be a list")
        identities.extend({**autopilot.unenrolled(), **partial} for partial in partials)
        identities.extend(autopilot.unenrolled() for _ in range(count))
        for identity in identities:
            tenant.autopilot.add(identity)
            created.append(identity["id"])
        return created
    if kind == "subscribedSkus":
        specs = body.get("skus") or []
        if not isinstance(specs, list):
            raise BadInput('skus must be a list of {"sku": part number, "enabled", "consumed", ...}')
        for spec in specs:
            sku = subscribed_sku(rng, tenant.tenant_id, tenant.default_domain.split(".", 1)[0], dict(spec))
            tenant.subscribed_skus.add(sku)
            created.append(sku["id"])
        return created
    if kind == "entraDevices":
        entra = EntraDeviceFactory(rng, _prefix(tenant), utcnow())
        made = []
        for device_id in body.get("forDevices") or []:
            managed = tenant.devices.get(str(device_id))
            if managed is None:
                raise LookupError(f"managedDevice {device_id} not found")
            made.append(entra.for_managed(managed))
        partials = body.get("devices") or []
        if not isinstance(partials, list):
            raise BadInput("devices must be a list")
        made.extend({**entra.unmanaged(index), **partial} for index, partial in enumerate(partials))
        made.extend(entra.unmanaged(index) for index in range(count))
        for obj in made:
            tenant.entra_devices.add(obj)
            created.append(obj["id"])
        return created
    # machines
    now = utcnow()
    for device_id in body.get("forDevices") or []:
        device = tenant.devices.get(str(device_id))
        if device is None:
            raise LookupError(f"managedDevice {device_id} not found")
        machine = machine_for_device(rng, device, now)
        tenant.machines.add(machine)
        created.append(machine["id"])
    for partial in body.get("machines") or []:
        machine = {**server_machine(rng, len(tenant.machines) + 1, tenant.key, now, orphan_aad=True), **partial}
        tenant.machines.add(machine)
        created.append(machine["id"])
    for index in range(count):
        machine = server_machine(rng, len(tenant.machines) + index + 1, tenant.key, now, orphan_aad=False)
        tenant.machines.add(machine)
        created.append(machine["id"])
    return created


__all__ = ["datetime", "generate_machines", "handle", "scenario_json", "tenant_summary", "timedelta"]
