"""An app registration's password credentials from Microsoft Graph (metadata only; Graph never returns
a secret's value after it was created, only `hint`, its first three characters).

`GET /v1.0/applications(appId='{appId}')?$select=passwordCredentials`, app-only: the app reads itself,
which needs Application.Read.All (or Application.ReadWrite.OwnedBy when the app owns itself) consented
in its home tenant. Without it Graph answers 403 and memsync falls back to an assumed expiry.
https://learn.microsoft.com/graph/api/application-get
https://learn.microsoft.com/graph/api/resources/passwordcredential
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.stores.tables import parse_iso

if TYPE_CHECKING:
    from shared.http import ApiClient

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


@dataclass(frozen=True)
class PasswordCredential:
    """One client secret of an app registration, as Graph describes it (no value)."""

    key_id: str
    hint: str | None
    display_name: str | None
    start: datetime | None
    end: datetime | None


def parse_password_credentials(payload: Any) -> list[PasswordCredential]:
    """The `passwordCredentials` of an application payload; entries without a keyId are skipped."""
    items = payload.get("passwordCredentials") if isinstance(payload, dict) else None
    found = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or not item.get("keyId"):
            continue
        hint = item.get("hint")
        found.append(
            PasswordCredential(
                key_id=str(item["keyId"]),
                hint=hint if isinstance(hint, str) else None,
                display_name=item.get("displayName") if isinstance(item.get("displayName"), str) else None,
                start=parse_iso(item.get("startDateTime")),
                end=parse_iso(item.get("endDateTime")),
            )
        )
    return found


def match_by_hint(
    credentials: list[PasswordCredential], hint: str, *, stored_on: datetime | None = None
) -> PasswordCredential | None:
    """The credential whose `hint` is `hint` (the secret's first three characters).

    Three characters can collide (an app may hold several secrets): among several matches, the one
    created closest to when memsync stored the secret wins, then the one that expires first (the
    cautious choice: warn too early rather than too late).
    """
    matches = [c for c in credentials if c.hint is not None and c.hint == hint and c.end is not None]
    if not matches:
        return None

    def rank(c: PasswordCredential) -> tuple[float, datetime]:
        assert c.end is not None
        distance = abs((c.start - stored_on).total_seconds()) if c.start and stored_on else 0.0
        return distance, c.end

    return min(matches, key=rank)


class ApplicationDirectory:
    """Reads app registrations from Graph through `ApiClient` (the one retry mechanism)."""

    def __init__(self, api: ApiClient, graph_url: str) -> None:
        self._api = api
        self._graph_url = graph_url.rstrip("/")

    async def list_password_credentials(self, app_id: str) -> list[PasswordCredential]:
        """Raises shared.http.FatalApiError (403: may not read itself; 404: not in this tenant) or
        RetriableApiError."""
        if not _GUID.match(app_id):
            raise ValueError("app id must be a GUID")
        url = f"{self._graph_url}/v1.0/applications(appId='{app_id}')"
        payload = await self._api.get_json(url, params={"$select": "passwordCredentials"})
        return parse_password_credentials(payload)
