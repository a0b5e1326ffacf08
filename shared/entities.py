"""The synced entities, each declared once; generic code does the rest.

A declaration says what is otherwise spread over a dozen modules: the entity's name (its route segment
and its key in counts), where Microsoft serves it (service, path, `$select`, page size), the application
permission that reads it and the rate-limit area it is read under (`shared.permissions`,
`shared.ratelimit`), its pure mapper, its table and key layout, its searchable and filterable columns,
its output fields, and whether a complete listing may mark rows removed. From it:

- `shared.services.tenant_sync` lists it (stream pages, map, diff, write in batches, removals only after a
  complete listing): one loop for every listed entity;
- `shared.stores.assets.AssetStore` stores, pages, searches and filters it: one store;
- `shared.api.parsing.parse_asset_query` checks its query parameters, `functions/integrations.py` serves
  its list route and CSV, and `shared.api.openapi` describes its filters.

The shape follows the declarative streams of the anchors: tap-github's one class per stream with `path`,
`primary_keys` and `replication_key`; the Singer SDK's `RESTStream`, which asks a new stream only for its
path and small hooks; dlt's tables of endpoints.

## Recipe: a new synced entity

1. **Mapper.** A pure function in `shared/mapping/<entity>.py`: `map_x(raw, *, tenant_id) -> dict` of the
   output fields, `id` first; text through `shared.mapping.text.storable`; `SkippedRecord` for a record it
   cannot read (the sync then keeps the stored copy and counts it). Test it on Microsoft's sample payload.
2. **Permission.** The read's area in `shared.permissions.READS`, citing Microsoft's permission table for
   the endpoint; `tests/unit/test_permissions.py` checks it against the documented list.
3. **Declaration.** An `Entity` below, added to `ENTITIES`: name, table (add its name to
   `shared.stores.tables`), `Source`, permission, rate-limit area (a key of
   `shared.ratelimit.AREA_LIMITS`; an unknown area fails at import), mapper, output fields, search
   columns, filters, and `marks_removed`.
4. **Simulator data and tests.** The route in `devstack/cloudsim`, checked against Microsoft's
   documentation; a sync test against its ground truth.

`docs/extending.md` walks through the same steps with the files each one touches.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from shared.mapping.autopilot import AUTOPILOT_FIELDS, AUTOPILOT_SELECT, map_autopilot_device
from shared.mapping.devices import (
    COMPLIANCE_STATES,
    DEFENDER_FIELDS,
    DEVICE_FIELDS,
    MANAGED_DEVICE_SELECT,
    map_device,
)
from shared.mapping.entra import ENTRA_DEVICE_FIELDS, ENTRA_DEVICE_SELECT, map_entra_device
from shared.mapping.joins import AUTOPILOT_SUMMARY, ENTRA_SUMMARY
from shared.mapping.licences import LICENCE_FIELDS, LICENCE_SELECT, PREPAID_UNITS, map_licence
from shared.mapping.lifecycle import OS_STATUSES, OS_SUPPORT_FACTS, OS_SUPPORT_FIELDS, os_support_facts
from shared.mapping.software import DETECTED_APP_SELECT, SOFTWARE_FIELDS, map_software
from shared.mapping.vulnerabilities import SEVERITIES, SUMMARY_FIELDS, VULNERABILITY_FIELDS, map_vulnerability
from shared.permissions import OPTIONAL_AREAS, READS, Permission
from shared.ratelimit import AREA_LIMITS
from shared.stores.tables import (
    AUTOPILOT_DEVICES_TABLE,
    DEVICE_SOFTWARE_TABLE,
    DEVICES_TABLE,
    ENTRA_DEVICES_TABLE,
    LICENCES_TABLE,
    SOFTWARE_TABLE,
    VULNERABILITIES_TABLE,
)

Service = Literal["graph", "defender"]


@dataclass(frozen=True)
class Source:
    """Where Microsoft serves an entity's listing: a collection that pages by `@odata.nextLink`, or an
    Intune export report (`report`, read by `shared.clients.exports`)."""

    service: Service
    path: str
    select: tuple[str, ...] = ()
    page_size: int | None = None
    report: str | None = None

    def params(self) -> dict[str, str]:
        """The query options of the first page (later pages follow the service's link whole)."""
        params: dict[str, str] = {}
        if self.select:
            params["$select"] = ",".join(self.select)
        if self.page_size is not None:
            params["$top"] = str(self.page_size)
        return params


@dataclass(frozen=True)
class Filter:
    """A query parameter of an entity's list route and the table column it filters on."""

    param: str
    column: str
    kind: Literal["bool", "enum"]
    description: str
    values: tuple[str, ...] = ()  # for "enum": the accepted values, in the order messages list them
    default: bool | None = None  # for "bool": the value when the parameter is absent
    hint: str = "Send one of these values, or leave it out."  # the action of an invalid value


@dataclass(frozen=True)
class Entity:
    name: str
    table: str
    source: Source
    permission_area: str
    rate_limit_area: str
    fields: tuple[str, ...] = ()  # output fields in order (`id` first), without the bookkeeping dates
    mapper: Callable[..., dict[str, Any]] | None = None
    search: Mapping[str, str] = field(default_factory=dict)  # output field -> lower-case column searched
    # An object field (or null) -> its members, each stored as its own typed column `{field}{Member}`
    # (`defenderRiskScore`), a list member as text joined by ", "; in CSV, columns `field.member`.
    nested: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    flag_fields: frozenset[str] = frozenset()  # booleans read as False when absent
    # Microsoft's date-times, stored as Table Storage DateTime (`field`, or `field.member` of a nested one)
    date_fields: frozenset[str] = frozenset()
    list_fields: frozenset[str] = frozenset()  # `field.member` lists, stored as text joined by ", "
    filters: tuple[Filter, ...] = ()
    marks_removed: bool = True  # a complete listing marks rows it did not contain as removed
    lists_removed: bool = False  # the list route can show removed rows (`removed` filter)
    dates_out: bool = False  # firstSeenAt, lastSeenAt and removedAt are part of the output
    join_field: str | None = None  # a field filled from another source; counted when it matched
    exposed: bool = True  # served by the list route GET .../tenants/{tenantId}/{name} (functions/integrations.py)
    # The sync goes on without it where the tenant does not grant its permission (or Microsoft refuses it
    # for want of a licence): a note on the tenant's status, and its stored rows kept as they are.
    optional: bool = False
    # What the tenant status says of a synced listing beyond its count (`counts.facts.<name>`): each
    # present asset's figures, summed (unmanaged devices, vulnerabilities by severity, licence units).
    facts: Callable[[dict[str, Any]], Mapping[str, int]] | None = None
    fact_keys: tuple[str, ...] = ()  # the figures `facts` gives, each 0 before the first asset
    summary: str = ""

    def __post_init__(self) -> None:
        # A declaration that names an unknown area fails here, at import, not by silently defaulting.
        if self.rate_limit_area not in AREA_LIMITS:
            raise ValueError(f"entity {self.name}: rate-limit area {self.rate_limit_area!r} is not in "
                             "shared.ratelimit.AREA_LIMITS")
        if self.permission_area not in READS:
            raise ValueError(f"entity {self.name}: permission area {self.permission_area!r} is not in "
                             "shared.permissions.READS")
        if self.optional and self.permission_area not in OPTIONAL_AREAS:
            raise ValueError(f"entity {self.name}: an optional entity's permission area must be in "
                             "shared.permissions.OPTIONAL_AREAS (consent asks for it)")

    @property
    def permission(self) -> Permission:
        return READS[self.permission_area]

    @property
    def listed(self) -> bool:
        """Whether the generic listing loop reads it (an export report has its own reader)."""
        return self.mapper is not None and self.source.report is None

    def filter(self, param: str) -> Filter | None:
        return next((f for f in self.filters if f.param == param), None)


DEVICES = Entity(
    name="devices",
    summary="A tenant's devices (hardware assets).",
    table=DEVICES_TABLE,
    # https://learn.microsoft.com/graph/api/intune-devices-manageddevice-list: pages of up to 1000.
    source=Source("graph", "/deviceManagement/managedDevices", MANAGED_DEVICE_SELECT, page_size=1000),
    permission_area="devices",
    rate_limit_area="intuneDevices",
    fields=DEVICE_FIELDS,
    mapper=map_device,
    search={"deviceName": "deviceNameLower", "serialNumber": "serialLower"},
    nested={"defender": DEFENDER_FIELDS, "autopilot": AUTOPILOT_SUMMARY, "entraDevice": ENTRA_SUMMARY,
            "vulnerabilities": SUMMARY_FIELDS, "osSupport": OS_SUPPORT_FIELDS},
    join_field="defender",  # the Defender machine joined by Entra device id (tenant counts.defenderMachines)
    # Devices past, and within 180 days of, their OS release's end of support (shared.mapping.lifecycle).
    facts=os_support_facts,
    fact_keys=OS_SUPPORT_FACTS,
    flag_fields=frozenset({"serialPlaceholder"}),
    date_fields=frozenset({"enrolledDateTime", "lastSyncDateTime", "defender.lastSeen",
                           "autopilot.lastContactedDateTime", "entraDevice.approximateLastSignInDateTime",
                           "entraDevice.registrationDateTime"}),
    list_fields=frozenset({"vulnerabilities.topCves"}),
    filters=(
        Filter("removed", "isRemoved", "bool",
               "true lists devices no longer in Intune (removedAt set) instead of current ones.", default=False),
        Filter("complianceState", "complianceState", "enum", "Only devices in this Intune compliance state.",
               values=COMPLIANCE_STATES, hint="Send one of Intune's compliance states, or leave it out."),
        # The machines to replace or upgrade: osSupport.status as the last sync judged it (the nested
        # column osSupportStatus; devices not synced since osSupport existed have none and never match).
        Filter("osSupport", "osSupportStatus", "enum", "Only devices whose OS release's support is in this "
               "state (osSupport.status): supported, endingSoon (within 180 days), ended or unknown.",
               values=OS_STATUSES, hint="Send supported, endingSoon, ended or unknown, or leave it out."),
    ),
    lists_removed=True,
    dates_out=True,
)

SOFTWARE = Entity(
    name="software",
    summary="A tenant's software titles (Intune detected apps).",
    table=SOFTWARE_TABLE,
    # https://learn.microsoft.com/graph/api/intune-devices-detectedapp-list
    source=Source("graph", "/deviceManagement/detectedApps", DETECTED_APP_SELECT),
    permission_area="apps",
    rate_limit_area="intuneApps",
    fields=SOFTWARE_FIELDS,
    mapper=map_software,
    search={"displayName": "displayNameLower", "publisher": "publisherLower"},
)

DEVICE_SOFTWARE = Entity(
    name="deviceSoftware",
    summary="Which detected app is on which device, from the Intune app-inventory export "
            "(shared.services.inventory; per-app listing as its fallback).",
    table=DEVICE_SOFTWARE_TABLE,
    # https://learn.microsoft.com/intune/intune-service/fundamentals/reports-export-graph-apis
    source=Source("graph", "/deviceManagement/reports/exportJobs", report="AppInvRawData"),
    permission_area="exports",
    rate_limit_area="intuneApps",
    exposed=False,  # served per device and per title (functions/inventory.py)
)

AUTOPILOT_DEVICES = Entity(
    name="autopilotDevices",
    summary="A tenant's Windows Autopilot device identities (hardware registered for Autopilot, enrolled or not).",
    table=AUTOPILOT_DEVICES_TABLE,
    # https://learn.microsoft.com/graph/api/intune-enrollment-windowsautopilotdeviceidentity-list: Microsoft
    # documents no page size for it; the service's own paging is followed.
    source=Source("graph", "/deviceManagement/windowsAutopilotDeviceIdentities", AUTOPILOT_SELECT),
    permission_area="autopilot",
    # Intune publishes no limit of its own for the enrollment endpoints: read under the device-management
    # limit, sharing its budget with the device listing (the cautious choice).
    rate_limit_area="intuneDevices",
    fields=AUTOPILOT_FIELDS,
    mapper=map_autopilot_device,
    search={"serialNumber": "serialLower", "displayName": "displayNameLower"},
    flag_fields=frozenset({"serialPlaceholder", "enrolled"}),
    date_fields=frozenset({"lastContactedDateTime"}),
    facts=lambda a: {"unenrolled": 0 if a["enrolled"] else 1},
    fact_keys=("unenrolled",),
    filters=(
        Filter("enrolled", "enrolled", "bool", "false lists identities Intune does not manage (never enrolled, "
               "or enrolment failed); true the enrolled ones; absent, all."),
    ),
    optional=True,
)

ENTRA_DEVICES = Entity(
    name="entraDevices",
    summary="A tenant's Microsoft Entra ID devices, managed by Intune or not.",
    table=ENTRA_DEVICES_TABLE,
    # https://learn.microsoft.com/graph/api/device-list
    source=Source("graph", "/devices", ENTRA_DEVICE_SELECT, page_size=999),
    permission_area="entraDevices",
    rate_limit_area="graphDirectory",
    fields=ENTRA_DEVICE_FIELDS,
    mapper=map_entra_device,
    search={"displayName": "displayNameLower", "deviceId": "deviceIdLower"},
    flag_fields=frozenset({"isManaged"}),
    date_fields=frozenset({"approximateLastSignInDateTime", "registrationDateTime"}),
    facts=lambda a: {"unmanaged": 0 if a["isManaged"] else 1},
    fact_keys=("unmanaged",),
    filters=(
        Filter("managed", "isManaged", "bool", "false lists devices Entra ID knows that Intune does not manage; "
               "true the managed ones; absent, all."),
    ),
    optional=True,
)

VULNERABILITIES = Entity(
    name="vulnerabilities",
    summary="The vulnerabilities Defender for Endpoint sees on a tenant's machines, one per machine, CVE and "
            "product version.",
    table=VULNERABILITIES_TABLE,
    # https://learn.microsoft.com/defender-endpoint/api/get-all-vulnerabilities-by-machines: `$top` up to
    # 10,000, then `$skip` (or the service's next link).
    source=Source("defender", "/api/vulnerabilities/machinesVulnerabilities", page_size=10_000),
    permission_area="vulnerabilities",
    rate_limit_area="defenderVulnerabilities",
    fields=VULNERABILITY_FIELDS,
    mapper=map_vulnerability,
    search={"cveId": "cveIdLower", "productName": "productNameLower"},
    filters=(
        Filter("severity", "severity", "enum", "Only vulnerabilities of this Defender severity.",
               values=SEVERITIES, hint="Send one of Defender's severities (Critical, High, Medium, Low), or leave "
               "it out."),
    ),
    facts=lambda a: {a["severity"].lower(): 1} if a["severity"] in SEVERITIES else {},
    fact_keys=tuple(s.lower() for s in SEVERITIES),
    # Listed per tenant like the others, and per device (GET .../devices/{deviceId}/vulnerabilities,
    # functions/inventory.py).
    optional=True,
)

LICENCES = Entity(
    name="licences",
    summary="A tenant's subscribed licences (SKUs): units paid for against units assigned.",
    table=LICENCES_TABLE,
    # https://learn.microsoft.com/graph/api/subscribedsku-list: one answer, `$select` only.
    source=Source("graph", "/subscribedSkus", LICENCE_SELECT),
    permission_area="licences",
    rate_limit_area="graphDirectory",
    fields=LICENCE_FIELDS,
    mapper=map_licence,
    search={"skuPartNumber": "skuPartNumberLower"},
    nested={"prepaidUnits": PREPAID_UNITS},
    # Units summed over the tenant, and the subscriptions using more than they have enabled (counted one
    # by one: a free SKU's ten thousand seats must not hide an over-used paid one).
    facts=lambda a: {"enabled": a["prepaidUnits"]["enabled"], "consumed": a["consumedUnits"] or 0,
                     "overConsumed": 1 if (a["consumedUnits"] or 0) > a["prepaidUnits"]["enabled"] else 0},
    fact_keys=("enabled", "consumed", "overConsumed"),
    optional=True,
)

ENTITIES: dict[str, Entity] = {e.name: e for e in (DEVICES, SOFTWARE, DEVICE_SOFTWARE, AUTOPILOT_DEVICES,
                                                   ENTRA_DEVICES, VULNERABILITIES, LICENCES)}
LISTED: tuple[Entity, ...] = tuple(e for e in ENTITIES.values() if e.listed)
EXPOSED: tuple[Entity, ...] = tuple(e for e in LISTED if e.exposed)
# Listed entities beyond devices and software: each is read by the same listing loop, and counted in the
# tenant status (`counts.<name>`) and the run record (`entities.<name>`) under its name.
OTHER_LISTED: tuple[Entity, ...] = tuple(e for e in LISTED if e not in (DEVICES, SOFTWARE))
# What an integration may choose to collect (`collect`), beyond the devices and software it always syncs.
OPTIONAL: tuple[Entity, ...] = tuple(e for e in ENTITIES.values() if e.optional)
COLLECTABLE: tuple[str, ...] = tuple(e.name for e in OPTIONAL)


def collects(e: Entity, *, include_defender: bool, collect: list[str] | None) -> bool:
    """Whether an integration syncs an entity: every required one; an optional one when `collect` names
    it (absent: every optional entity), and one read from Defender only with `includeDefender`."""
    if not e.optional:
        return True
    if e.source.service == "defender" and not include_defender:
        return False
    return collect is None or e.name in collect


def chosen_areas(*, include_defender: bool, collect: list[str] | None) -> tuple[str, ...]:
    """The permission areas of the optional entities an integration collects (consent asks for them)."""
    areas: list[str] = []
    for e in OPTIONAL:
        if collects(e, include_defender=include_defender, collect=collect) and e.permission_area not in areas:
            areas.append(e.permission_area)
    return tuple(areas)


def entity(name: str) -> Entity:
    try:
        return ENTITIES[name]
    except KeyError:
        raise KeyError(f"{name!r} is not a synced entity (shared.entities.ENTITIES)") from None
