"""Customer tenants as the partner's sources list them, merged by tenant id.

Sources: Partner Center customers (`companyProfile.tenantId/domain/companyName`, `relationshipToPartner`),
Graph `/contracts` (`customerId`, `defaultDomainName`, `displayName`: snapshots from when the relationship
began) and Graph `/tenantRelationships/delegatedAdminCustomers` (GDAP: `tenantId`, `displayName`).
The customer's own `/organization` is the authority on its name and default domain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from shared.mapping.text import bounded

_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

PARTNER_CENTER = "partnerCenter"
CONTRACTS = "contracts"
GDAP = "gdap"
SINGLE = "single"
# Name precedence: Partner Center's company profile is kept current; contracts are snapshots.
_NAME_RANK = {PARTNER_CENTER: 0, GDAP: 1, CONTRACTS: 2, SINGLE: 3}


def tenant_guid(value: Any) -> str | None:
    """A tenant id as memsync keys it (lower-case GUID), or None when the value is no GUID."""
    if not isinstance(value, str):
        return None
    tid = value.strip().lower()
    return tid if _GUID.match(tid) else None


def _text(value: Any) -> str | None:
    """A name or domain from Microsoft, storable (see shared.mapping.text): scrubbed and bounded."""
    return bounded(value.strip()) or None if isinstance(value, str) else None


@dataclass
class DiscoveredTenant:
    tenant_id: str
    display_name: str | None = None
    default_domain_name: str | None = None
    relationship: str | None = None
    discovered_by: list[str] = field(default_factory=list)
    _name_rank: int = 99

    def absorb(self, other: DiscoveredTenant) -> None:
        for source in other.discovered_by:
            if source not in self.discovered_by:
                self.discovered_by.append(source)
        self.relationship = self.relationship or other.relationship
        if other._name_rank < self._name_rank and (other.display_name or other.default_domain_name):
            self.display_name = other.display_name or self.display_name
            self.default_domain_name = other.default_domain_name or self.default_domain_name
            self._name_rank = other._name_rank
        else:
            self.display_name = self.display_name or other.display_name
            self.default_domain_name = self.default_domain_name or other.default_domain_name


def _found(tid: str, name: Any, domain: Any, source: str, relationship: Any = None) -> DiscoveredTenant:
    return DiscoveredTenant(
        tenant_id=tid,
        display_name=_text(name),
        default_domain_name=_text(domain),
        relationship=_text(relationship),
        discovered_by=[source],
        _name_rank=_NAME_RANK[source],
    )


def from_partner_center_customer(item: dict[str, Any]) -> DiscoveredTenant | None:
    profile = item.get("companyProfile") if isinstance(item, dict) else None
    if not isinstance(profile, dict):
        return None
    tid = tenant_guid(profile.get("tenantId")) or tenant_guid(item.get("id"))
    if tid is None:
        return None
    return _found(tid, profile.get("companyName"), profile.get("domain"), PARTNER_CENTER,
                  item.get("relationshipToPartner"))


def from_contract(item: dict[str, Any]) -> DiscoveredTenant | None:
    tid = tenant_guid(item.get("customerId")) if isinstance(item, dict) else None
    if tid is None:
        return None
    return _found(tid, item.get("displayName"), item.get("defaultDomainName"), CONTRACTS)


def from_delegated_admin_customer(item: dict[str, Any]) -> DiscoveredTenant | None:
    if not isinstance(item, dict):
        return None
    tid = tenant_guid(item.get("tenantId")) or tenant_guid(item.get("id"))
    if tid is None:
        return None
    return _found(tid, item.get("displayName"), None, GDAP)


def merge_tenants(found: list[DiscoveredTenant]) -> dict[str, DiscoveredTenant]:
    """One record per tenant id, remembering every source that listed it."""
    merged: dict[str, DiscoveredTenant] = {}
    for tenant in found:
        current = merged.get(tenant.tenant_id)
        if current is None:
            merged[tenant.tenant_id] = DiscoveredTenant(
                tenant.tenant_id, tenant.display_name, tenant.default_domain_name, tenant.relationship,
                list(tenant.discovered_by), tenant._name_rank,
            )
        else:
            current.absorb(tenant)
    return merged


def organization_names(org: dict[str, Any]) -> tuple[str | None, str | None]:
    """(displayName, default verified domain) of a Graph `/organization` object."""
    name = _text(org.get("displayName"))
    domains = org.get("verifiedDomains")
    default = None
    if isinstance(domains, list):
        for domain in domains:
            if isinstance(domain, dict) and domain.get("isDefault") is True:
                default = _text(domain.get("name"))
                break
        if default is None:
            initial = [d for d in domains if isinstance(d, dict) and d.get("isInitial") is True]
            default = _text(initial[0].get("name")) if initial else None
    return name, default
