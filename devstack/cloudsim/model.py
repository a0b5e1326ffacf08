"""The simulator's runtime state: tenants, app registrations, consents and entity stores."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .errors import json_bytes
from .timeutil import parse_datetime

GRAPH = "https://graph.microsoft.com"
DEFENDER = "https://api.securitycenter.microsoft.com"
DEFENDER_ALT = "https://api.security.microsoft.com"
PARTNER_CENTER = "https://api.partnercenter.microsoft.com"
KEY_VAULT = "https://vault.azure.net"

# First-party resource application ids, as Entra knows them; Partner Center's
# applicationconsents names resources by these ids (enterpriseApplicationId).
RESOURCE_APP_IDS: dict[str, str] = {
    GRAPH: "00000003-0000-0000-c000-000000000000",
    DEFENDER: "fc780465-2017-40d4-a0c5-307022471b92",
    PARTNER_CENTER: "fa3d9a0c-3fb0-42cc-9193-47c7ecd2edbd",
    KEY_VAULT: "cfa8b339-82a2-471a-a3c9-0fc0be7a4093",
}
RESOURCE_BY_APP_ID = {app_id: aud for aud, app_id in RESOURCE_APP_IDS.items()}
# Every spelling a client may put in ``scope`` -> canonical resource.
RESOURCE_ALIASES: dict[str, str] = {
    GRAPH: GRAPH,
    "https://graph.microsoft.com/": GRAPH,
    DEFENDER: DEFENDER,
    DEFENDER_ALT: DEFENDER,
    "https://api-us.securitycenter.microsoft.com": DEFENDER,
    "https://api-eu.securitycenter.microsoft.com": DEFENDER,
    "https://api-uk.securitycenter.microsoft.com": DEFENDER,
    PARTNER_CENTER: PARTNER_CENTER,
    KEY_VAULT: KEY_VAULT,
    "https://vault.azure.net/": KEY_VAULT,
    **{app_id: aud for aud, app_id in RESOURCE_APP_IDS.items()},
}

# Entra role template ids a GDAP relationship may carry (by the names scenarios use).
ROLE_IDS: dict[str, str] = {
    "Global Administrator": "62e90394-69f5-4237-9190-012177145e10",
    "Privileged Role Administrator": "e8611ab8-c189-46e8-94e1-60213ab1f814",
    "Cloud Application Administrator": "158c047a-c907-4556-b7ef-446551a6b5f7",
    "Application Administrator": "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3",
    "Intune Administrator": "3a2c62db-5318-420d-8d74-23affee5d9d5",
    "Security Reader": "5d6b6bb7-de71-4623-b4af-96380a352509",
    "Directory Readers": "88d8e3e3-8f55-4a1e-953a-9b9898b8876b",
}
# The roles with which a partner admin may consent an app in the customer through Partner Center.
CONSENT_ROLE_IDS = frozenset(ROLE_IDS[n] for n in ("Global Administrator", "Privileged Role Administrator",
                                                   "Cloud Application Administrator"))

RESOURCE_SHORT_NAMES = {"graph": GRAPH, "defender": DEFENDER, "partnercenter": PARTNER_CENTER, "vault": KEY_VAULT}


def canonical_resource(value: str) -> str | None:
    return RESOURCE_ALIASES.get(value.rstrip("/")) or RESOURCE_ALIASES.get(value)


@dataclass
class AppSecret:
    key_id: str
    value: str
    start: datetime
    end: datetime
    display_name: str = ""

    @property
    def hint(self) -> str:
        return self.value[:3]


@dataclass
class AppRegistration:
    app_id: str
    object_id: str
    display_name: str
    home_tenant_id: str
    secrets: list[AppSecret] = field(default_factory=list)
    disabled: bool = False
    sign_in_audience: str = "AzureADMultipleOrgs"


class EntityStore:
    """Ordered entities with pre-serialized JSON, so a page is a join of bytes.

    Paging uses a monotonic sequence number per entity as the ``$skiptoken`` position, so a
    listing stays stable while entities are added or removed between pages (the real
    ``$skiptoken`` is opaque; this is one valid way to make it).
    """

    def __init__(
        self,
        *,
        list_overrides: dict[str, Any] | None = None,
        datetime_fields: tuple[str, ...] = (),
        lazy_json: bool = False,
        list_exclude: tuple[str, ...] = (),
    ) -> None:
        self._items: dict[str, dict[str, Any]] = {}
        self._seq_of: dict[str, int] = {}
        self._order: list[str] = []
        self._seqs: list[int] = []
        self._next_seq = 1
        self._list_overrides = list_overrides or {}
        # Properties a listing leaves out (returned only when $selected).
        self._list_exclude = frozenset(list_exclude)
        # Serialize on first listing instead of on add: keeps scenario start-up cheap for a store
        # that most runs never list.
        self._lazy_json = lazy_json
        self._datetime_fields = datetime_fields
        self._list_json: dict[str, bytes] = {}
        self._select_json: dict[tuple[str, ...], dict[str, bytes]] = {}
        self.epochs: dict[str, dict[str, float]] = {}

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, entity_id: object) -> bool:
        return entity_id in self._items

    def ids(self) -> list[str]:
        return list(self._order)

    def values(self) -> list[dict[str, Any]]:
        return [self._items[i] for i in self._order]

    def get(self, entity_id: str) -> dict[str, Any] | None:
        return self._items.get(entity_id)

    def _index(self, entity_id: str, obj: dict[str, Any]) -> None:
        epochs: dict[str, float] = {}
        for name in self._datetime_fields:
            raw = obj.get(name)
            if isinstance(raw, str) and raw:
                try:
                    epochs[name] = parse_datetime(raw).timestamp()
                except ValueError:
                    pass
        self.epochs[entity_id] = epochs
        if self._lazy_json:
            self._list_json.pop(entity_id, None)
        else:
            self._list_json[entity_id] = self._serialize(obj)
        for cache in self._select_json.values():
            cache.pop(entity_id, None)

    def add(self, obj: dict[str, Any]) -> None:
        entity_id = str(obj["id"])
        if entity_id in self._items:
            self.update(entity_id, obj)
            return
        self._items[entity_id] = obj
        seq = self._next_seq
        self._next_seq += 1
        self._seq_of[entity_id] = seq
        self._order.append(entity_id)
        self._seqs.append(seq)
        self._index(entity_id, obj)

    def add_many(self, objs: Iterable[dict[str, Any]]) -> None:
        for obj in objs:
            self.add(obj)

    def update(self, entity_id: str, fields: dict[str, Any]) -> dict[str, Any] | None:
        current = self._items.get(entity_id)
        if current is None:
            return None
        current.update({k: v for k, v in fields.items() if k != "id"})
        self._index(entity_id, current)
        return current

    def remove(self, entity_id: str) -> bool:
        if entity_id not in self._items:
            return False
        seq = self._seq_of.pop(entity_id)
        pos = bisect.bisect_left(self._seqs, seq)
        del self._seqs[pos]
        del self._order[pos]
        del self._items[entity_id]
        self._list_json.pop(entity_id, None)
        self.epochs.pop(entity_id, None)
        for cache in self._select_json.values():
            cache.pop(entity_id, None)
        return True

    def _serialize(self, obj: dict[str, Any]) -> bytes:
        if self._list_exclude:
            obj = {k: v for k, v in obj.items() if k not in self._list_exclude}
        return json_bytes({**obj, **self._list_overrides} if self._list_overrides else obj)

    def list_json(self, entity_id: str) -> bytes:
        cached = self._list_json.get(entity_id)
        if cached is None:
            cached = self._list_json[entity_id] = self._serialize(self._items[entity_id])
        return cached

    def select_json(self, entity_id: str, select: tuple[str, ...], *, full: bool = False) -> bytes:
        """Serialized projection; cached per select-set so repeated listings stay cheap."""
        cache_key = (("__full__",) if full else ()) + select
        cache = self._select_json.setdefault(cache_key, {})
        cached = cache.get(entity_id)
        if cached is None:
            source = self._items[entity_id]
            if not full and self._list_overrides:
                source = {**source, **self._list_overrides}
            projected = {name: source.get(name) for name in select}
            if "@odata.type" in source:
                projected = {"@odata.type": source["@odata.type"], **projected}
            cached = json_bytes(projected)
            cache[entity_id] = cached
        return cached

    def page(
        self,
        *,
        after_seq: int,
        top: int,
        predicate: Callable[[str], bool] | None = None,
    ) -> tuple[list[str], int, bool]:
        """Up to ``top`` ids after ``after_seq``; returns (ids, last seq, more remain)."""
        start = bisect.bisect_right(self._seqs, after_seq)
        out: list[str] = []
        last_seq = after_seq
        order = self._order
        seqs = self._seqs
        total = len(order)
        i = start
        while i < total:
            entity_id = order[i]
            if predicate is None or predicate(entity_id):
                if len(out) == top:
                    return out, last_seq, True
                out.append(entity_id)
                last_seq = seqs[i]
            i += 1
        return out, last_seq, False

    def filtered(self, predicate: Callable[[str], bool] | None = None) -> list[str]:
        return [i for i in self._order if predicate is None or predicate(i)]


class RecordList:
    """Records listed by position, for a collection that pages by ``$skip`` and whose ids may repeat (Defender's
    machinesVulnerabilities can list one id on two pages), so nothing here is keyed by id.

    ``source`` makes the records on first use: a large scenario builds its tenants without paying for data
    most runs never list, and what it makes depends only on what the scenario handed ``source``, not on when
    it is first asked."""

    def __init__(self, source: Callable[[], list[dict[str, Any]]] | None = None) -> None:
        self._source = source
        self._items: list[dict[str, Any]] | None = None if source is not None else []
        self._json: list[bytes | None] = []

    def _loaded(self) -> list[dict[str, Any]]:
        if self._items is None:
            assert self._source is not None
            self._items = self._source()
            self._source = None
            self._json = [None] * len(self._items)
        return self._items

    def __len__(self) -> int:
        return len(self._loaded())

    def values(self) -> list[dict[str, Any]]:
        return list(self._loaded())

    def find(self, record_id: str) -> list[dict[str, Any]]:
        return [r for r in self._loaded() if r.get("id") == record_id]

    def append(self, obj: dict[str, Any]) -> None:
        self._loaded().append(obj)
        self._json.append(None)

    def remove(self, record_id: str) -> int:
        """Removes every record with this id; how many there were."""
        items = self._loaded()
        keep = [i for i, r in enumerate(items) if r.get("id") != record_id]
        removed = len(items) - len(keep)
        self._items = [items[i] for i in keep]
        self._json = [self._json[i] for i in keep]
        return removed

    def positions(self, predicate: Callable[[dict[str, Any]], bool] | None = None) -> list[int]:
        items = self._loaded()
        return list(range(len(items))) if predicate is None else [i for i, r in enumerate(items) if predicate(r)]

    def json(self, position: int) -> bytes:
        items = self._loaded()
        cached = self._json[position]
        if cached is None:
            cached = self._json[position] = json_bytes(items[position])
        return cached


@dataclass
class ExportJob:
    job_id: str
    report_name: str
    select: list[str]
    filter: str | None
    format: str
    requested: datetime
    polls: int = 0
    status: str = "notStarted"
    blob: bytes | None = None
    blob_token: str = ""


@dataclass
class TenantState:
    tenant_id: str
    key: str
    display_name: str
    default_domain: str
    relationship: str  # dap | gdap | both | indirect | none | partner | host | standalone
    intune_licensed: bool
    defender_licensed: bool
    exists: bool = True
    forced_token_error: dict[str, Any] | None = None
    # appId -> canonical resource -> granted application permissions (the service principal's roles)
    consents: dict[str, dict[str, set[str]]] = field(default_factory=dict)
    partner_tenant_id: str | None = None
    created: datetime | None = None
    devices: EntityStore = field(
        default_factory=lambda: EntityStore(
            # In a list response Intune gives 0 / null for these two (FACTS.md).
            list_overrides={"physicalMemoryInBytes": 0, "ethernetMacAddress": None},
            datetime_fields=("lastSyncDateTime", "enrolledDateTime"),
        )
    )
    detected_apps: EntityStore = field(default_factory=EntityStore)
    app_devices: dict[str, list[str]] = field(default_factory=dict)
    machines: EntityStore = field(default_factory=lambda: EntityStore(datetime_fields=("lastSeen", "firstSeen")))
    # windowsAutopilotDeviceIdentities, in listing (serial-number) order
    autopilot: EntityStore = field(default_factory=lambda: EntityStore(lazy_json=True))
    # Microsoft Entra ID devices (/devices), in listing (object id) order; isManagementRestricted is
    # returned only on $select.
    entra_devices: EntityStore = field(
        default_factory=lambda: EntityStore(lazy_json=True, list_exclude=("isManagementRestricted",))
    )
    # Defender's machinesVulnerabilities, in listing order (by machine), made on first use
    vulnerabilities: RecordList = field(default_factory=RecordList)
    # Graph's subscribedSkus, in listing order
    subscribed_skus: EntityStore = field(default_factory=lambda: EntityStore(lazy_json=True))
    export_jobs: dict[str, ExportJob] = field(default_factory=dict)
    expected: dict[str, Any] = field(default_factory=dict)
    pc_customer_id: str = ""
    # GDAP relationships with the partner, as Graph's delegatedAdminRelationship shows them (docs/gdap.md)
    gdap_relationships: list[dict[str, Any]] = field(default_factory=list)

    def has_dap(self) -> bool:
        return self.relationship in ("dap", "both")

    def gdap_allows_consent(self, now: datetime) -> bool:
        """An active GDAP relationship whose roles may consent apps (Global, Privileged Role or Cloud
        Application Administrator)."""
        from .timeutil import parse_datetime

        for rel in self.gdap_relationships:
            end = rel.get("endDateTime")
            if rel.get("status") not in ("active", "expiring") or (end and parse_datetime(end) <= now):
                continue
            roles = {r.get("roleDefinitionId") for r in rel.get("accessDetails", {}).get("unifiedRoles", [])}
            if roles & CONSENT_ROLE_IDS:
                return True
        return False

    def organization(self) -> dict[str, Any]:
        created = self.created.strftime("%Y-%m-%dT%H:%M:%SZ") if self.created else None
        domains = [
            {
                "capabilities": "Email, OfficeCommunicationsOnline",
                "isDefault": True,
                "isInitial": True,
                "name": self.default_domain,
                "type": "Managed",
            }
        ]
        return {
            "id": self.tenant_id,
            "deletedDateTime": None,
            "businessPhones": [],
            "city": None,
            "country": None,
            "countryLetterCode": "US",
            "createdDateTime": created,
            "defaultUsageLocation": None,
            "displayName": self.display_name,
            "isMultipleDataLocationsForServicesEnabled": None,
            "marketingNotificationEmails": [],
            "onPremisesLastSyncDateTime": None,
            "onPremisesSyncEnabled": None,
            "partnerTenantType": "ResellerPartnerDelegatedAdmin" if self.relationship == "partner" else None,
            "postalCode": None,
            "preferredLanguage": "en",
            "securityComplianceNotificationMails": [],
            "securityComplianceNotificationPhones": [],
            "state": None,
            "street": None,
            "technicalNotificationMails": [f"admin@{self.default_domain}"],
            "tenantType": "AAD",
            "directorySizeQuota": {"used": 100 + len(self.devices), "total": 50000},
            "assignedPlans": self._assigned_plans(),
            "privacyProfile": None,
            "provisionedPlans": [],
            "verifiedDomains": domains,
        }

    def _assigned_plans(self) -> list[dict[str, Any]]:
        created = self.created.strftime("%Y-%m-%dT%H:%M:%SZ") if self.created else None
        plans = [
            {
                "assignedDateTime": created,
                "capabilityStatus": "Enabled",
                "service": "exchange",
                "servicePlanId": "efb87545-963c-4e0d-99df-69c6916d9eb0",
            }
        ]
        if self.intune_licensed:
            plans.append(
                {
                    "assignedDateTime": created,
                    "capabilityStatus": "Enabled",
                    "service": "SCO",
                    "servicePlanId": "c1ec4a95-1f05-45b3-a911-aa3fa01094f5",
                }
            )
        if self.defender_licensed:
            plans.append(
                {
                    "assignedDateTime": created,
                    "capabilityStatus": "Enabled",
                    "service": "WindowsDefenderATP",
                    "servicePlanId": "871d91ec-ec1a-452b-a83f-bd76c7d770ef",
                }
            )
        return plans

    def granted_roles(self, app_id: str, resource: str) -> set[str] | None:
        """The app's roles for ``resource`` here, or None when it has no service principal here."""
        grants = self.consents.get(app_id)
        if grants is None:
            return None
        return set(grants.get(resource, set()))
