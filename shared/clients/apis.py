"""Authenticated clients for Microsoft's APIs, built in one place from the process's long-lived parts.

Every call memsync makes to Graph, Defender or Partner Center with an app-only token goes through an
`ApiClient` made here: the token of (tenant, app) for the service's scope, the rate limit of the area
(`shared.ratelimit.AREA_LIMITS`), the caller's budget and call counts. The runtime holds one `Apis`
(`Runtime.api`); a test builds one from an `httpx.MockTransport` client and a token stand-in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from shared.http import ApiClient, Budget, CallStats
from shared.ratelimit import RateLimits

if TYPE_CHECKING:
    import httpx

    from shared.auth import AppCredential
    from shared.settings import Settings

Service = Literal["graph", "defender", "partnerCenter"]


class Tokens(Protocol):
    """What `shared.auth.TenantTokens` offers: an app-only bearer token for (tenant, app, scope)."""

    async def get_token(self, tenant_id: str, app: AppCredential, scope: str, *, fresh: bool = False) -> str: ...


@dataclass(frozen=True)
class Apis:
    settings: Settings
    http: httpx.AsyncClient
    tokens: Tokens
    limits: RateLimits

    def scope(self, service: Service) -> str:
        cloud = self.settings.cloud
        return {"graph": cloud.graph_scope, "defender": cloud.defender_scope,
                "partnerCenter": cloud.partner_center_scope}[service]

    def api(
        self, tenant_id: str, app: AppCredential, area: str, budget: Budget, stats: CallStats, *,
        service: Service = "graph", label: str | None = None,
    ) -> ApiClient:
        """A client for `service` in `tenant_id` as `app`, limited as `area` (an unknown area is a
        KeyError), spending `budget` and counting into `stats` under `label` (default: the service)."""
        scope, tokens = self.scope(service), self.tokens

        async def token(fresh: bool) -> str:
            return await tokens.get_token(tenant_id, app, scope, fresh=fresh)

        return ApiClient(self.http, service=label or service, token=token, budget=budget, stats=stats,
                         limiter=self.limits.bucket(area, tenant_id, app.app_id))
