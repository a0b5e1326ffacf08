"""The four Microsoft clouds memsync can run in, and their endpoints and token audiences.

Base URLs may be overridden (the local simulator does), but token scopes always stay the cloud's own
audiences: Entra issues tokens for the resource's identifier URI, not for whatever host serves it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class CloudName(StrEnum):
    PUBLIC = "public"
    USGOV = "usgov"
    USGOVDOD = "usgovdod"
    CHINA = "china"


@dataclass(frozen=True)
class Cloud:
    """Endpoints and audiences of one Microsoft cloud."""

    name: CloudName
    authority_host: str
    graph_url: str
    defender_url: str
    partner_center_url: str
    graph_audience: str
    defender_audience: str
    partner_center_audience: str
    vault_audience: str
    # Hosts of Entra ID that azure-identity may run instance discovery against.
    authority_hosts: frozenset[str]

    @property
    def graph_scope(self) -> str:
        return f"{self.graph_audience}/.default"

    @property
    def defender_scope(self) -> str:
        return f"{self.defender_audience}/.default"

    @property
    def partner_center_scope(self) -> str:
        return f"{self.partner_center_audience}/.default"

    @property
    def vault_scope(self) -> str:
        return f"{self.vault_audience}/.default"


# National cloud endpoints:
# https://learn.microsoft.com/graph/deployments
# https://learn.microsoft.com/defender-endpoint/gov (Defender for Endpoint for US Government customers)
# https://learn.microsoft.com/partner-center/developer/partner-center-rest-api-reference
CLOUDS: dict[CloudName, Cloud] = {
    CloudName.PUBLIC: Cloud(
        name=CloudName.PUBLIC,
        authority_host="https://login.microsoftonline.com",
        graph_url="https://graph.microsoft.com",
        defender_url="https://api.security.microsoft.com",
        partner_center_url="https://api.partnercenter.microsoft.com",
        graph_audience="https://graph.microsoft.com",
        # Defender still wants the legacy audience even on api.security.microsoft.com; a token for the new
        # host name is answered 403 by some APIs (Defender docs, "Some ... APIs continue to require
        # access tokens issued for the legacy resource").
        defender_audience="https://api.securitycenter.microsoft.com",
        partner_center_audience="https://api.partnercenter.microsoft.com",
        vault_audience="https://vault.azure.net",
        authority_hosts=frozenset({"login.microsoftonline.com", "login.windows.net", "sts.windows.net"}),
    ),
    CloudName.USGOV: Cloud(
        name=CloudName.USGOV,
        authority_host="https://login.microsoftonline.us",
        graph_url="https://graph.microsoft.us",
        defender_url="https://api-gov.securitycenter.microsoft.us",
        partner_center_url="https://api.partnercenter.microsoft.us",
        graph_audience="https://graph.microsoft.us",
        defender_audience="https://api-gov.securitycenter.microsoft.us",
        partner_center_audience="https://api.partnercenter.microsoft.us",
        vault_audience="https://vault.usgovcloudapi.net",
        authority_hosts=frozenset({"login.microsoftonline.us"}),
    ),
    CloudName.USGOVDOD: Cloud(
        name=CloudName.USGOVDOD,
        authority_host="https://login.microsoftonline.us",
        graph_url="https://dod-graph.microsoft.us",
        defender_url="https://api-gov.securitycenter.microsoft.us",
        partner_center_url="https://api.partnercenter.microsoft.us",
        graph_audience="https://dod-graph.microsoft.us",
        defender_audience="https://api-gov.securitycenter.microsoft.us",
        partner_center_audience="https://api.partnercenter.microsoft.us",
        vault_audience="https://vault.usgovcloudapi.net",
        authority_hosts=frozenset({"login.microsoftonline.us"}),
    ),
    CloudName.CHINA: Cloud(
        name=CloudName.CHINA,
        authority_host="https://login.chinacloudapi.cn",
        graph_url="https://microsoftgraph.chinacloudapi.cn",
        defender_url="https://api.securitycenter.azure.cn",
        partner_center_url="https://partner.partnercenterapi.microsoftonline.cn",
        graph_audience="https://microsoftgraph.chinacloudapi.cn",
        defender_audience="https://api.securitycenter.azure.cn",
        partner_center_audience="https://partner.partnercenterapi.microsoftonline.cn",
        vault_audience="https://vault.azure.cn",
        authority_hosts=frozenset({"login.chinacloudapi.cn"}),
    ),
}
