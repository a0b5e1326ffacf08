"""Graph `GET /tenantRelationships/delegatedAdminRelationships`: the partner's GDAP relationships.

Listed once per integration (all pages, as the partner app with DelegatedAdminRelationship.Read.All) and
matched to customers by `customer.tenantId` here, rather than one filtered call per customer.
https://learn.microsoft.com/graph/api/tenantrelationship-list-delegatedadminrelationships
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, Protocol

from shared.models import GdapRelationship

RELATIONSHIPS_PATH = "/tenantRelationships/delegatedAdminRelationships"

# Entra built-in role template ids that a GDAP relationship may carry, by name. The three that let the
# partner admin consent an app in the customer through Partner Center's applicationconsents (Microsoft:
# "Use the Exchange Online PowerShell v3 Module with GDAP and App Consent", prerequisites):
# https://learn.microsoft.com/powershell/partnercenter/exchange-online-gdap-app
GLOBAL_ADMINISTRATOR = "62e90394-69f5-4237-9190-012177145e10"
PRIVILEGED_ROLE_ADMINISTRATOR = "e8611ab8-c189-46e8-94e1-60213ab1f814"
CLOUD_APPLICATION_ADMINISTRATOR = "158c047a-c907-4556-b7ef-446551a6b5f7"
CONSENT_ROLES = frozenset({GLOBAL_ADMINISTRATOR, PRIVILEGED_ROLE_ADMINISTRATOR, CLOUD_APPLICATION_ADMINISTRATOR})
# https://learn.microsoft.com/entra/identity/role-based-access-control/permissions-reference
ROLE_NAMES: dict[str, str] = {
    GLOBAL_ADMINISTRATOR: "Global Administrator",
    PRIVILEGED_ROLE_ADMINISTRATOR: "Privileged Role Administrator",
    CLOUD_APPLICATION_ADMINISTRATOR: "Cloud Application Administrator",
    "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3": "Application Administrator",
    "3a2c62db-5318-420d-8d74-23affee5d9d5": "Intune Administrator",
    "88d8e3e3-8f55-4a1e-953a-9b9898b8876b": "Directory Readers",
    "f2ef992c-3afb-46b9-b7cf-a126ee74c451": "Global Reader",
    "729827e3-9c14-49f7-bb1b-9608f156bbb8": "Helpdesk Administrator",
    "194ae4cb-b126-40b2-bd5b-6091b380977d": "Security Administrator",
    "5d6b6bb7-de71-4623-b4af-96380a352509": "Security Reader",
    "fe930be7-5e62-47db-91af-98c3a49a38b1": "User Administrator",
}
# Relationship statuses under which the partner's admins hold the roles in the customer.
ACTIVE_STATUSES = frozenset({"active", "expiring"})


class Pager(Protocol):
    """What `GraphClient.pages` offers: each page's `value`, following `@odata.nextLink`."""

    def pages(self, api: Any, path: str, params: dict[str, str] | None = None) -> AsyncIterator[
        list[dict[str, Any]]]: ...


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def relationship_customer(item: dict[str, Any]) -> str | None:
    customer = item.get("customer")
    tid = customer.get("tenantId") if isinstance(customer, dict) else None
    return tid.strip().lower() if isinstance(tid, str) and tid.strip() else None


def map_relationship(item: dict[str, Any]) -> GdapRelationship | None:
    """A delegatedAdminRelationship as memsync keeps it; None for an item without an id."""
    rid = item.get("id")
    if not isinstance(rid, str) or not rid:
        return None
    access = item.get("accessDetails")
    unified = access.get("unifiedRoles") if isinstance(access, dict) else None
    role_ids = [
        str(r["roleDefinitionId"]).lower()
        for r in (unified if isinstance(unified, list) else [])
        if isinstance(r, dict) and isinstance(r.get("roleDefinitionId"), str)
    ]
    status = item.get("status")
    name = item.get("displayName")
    return GdapRelationship(
        id=rid,
        display_name=name if isinstance(name, str) else None,
        status=status if isinstance(status, str) else None,
        end_date_time=_when(item.get("endDateTime")),
        roles=[ROLE_NAMES.get(r, r) for r in role_ids],
        role_ids=role_ids,
    )


def is_active(relationship: GdapRelationship, now: datetime) -> bool:
    if (relationship.status or "").lower() not in ACTIVE_STATUSES:
        return False
    return relationship.end_date_time is None or relationship.end_date_time > now


def allows_consent(relationship: GdapRelationship, now: datetime) -> bool:
    return is_active(relationship, now) and bool(CONSENT_ROLES & set(relationship.role_ids))


class DelegatedAdminRelationships:
    """The partner tenant's GDAP relationships, grouped by customer tenant id."""

    def __init__(self, graph: Pager, api: Any) -> None:
        self._graph = graph
        self._api = api

    async def by_customer(self) -> dict[str, list[GdapRelationship]]:
        found: dict[str, list[GdapRelationship]] = {}
        async for page in self._graph.pages(self._api, RELATIONSHIPS_PATH):
            for item in page:
                tid = relationship_customer(item)
                mapped = map_relationship(item)
                if tid is not None and mapped is not None:
                    found.setdefault(tid, []).append(mapped)
        return found
