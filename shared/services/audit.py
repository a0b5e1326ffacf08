"""Who changed what, when, from where, with what outcome: the audit trail's service (shared/stores/audit.py).

`record` is called by the HTTP edge for every request that changes something (functions/audit.py), made or
refused; a record that cannot be written is logged as an error and does not undo the change it describes
(the change already happened; its answer still reaches the caller). `list_audit` pages the trail newest
first, by integration and time.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.stores.audit import AuditEntry, AuditStore

if TYPE_CHECKING:
    from shared.runtime import Runtime

log = logging.getLogger(__name__)


async def record(rt: Runtime, entry: AuditEntry) -> bool:
    try:
        await AuditStore(rt.tables).append(entry)
    except Exception as exc:  # noqa: BLE001  # the trail must not turn a made change into a 500
        log.error("audit record of %s on integration %s not written (%s)", entry.action, entry.integration_id,
                  type(exc).__name__)
        return False
    return True


async def list_audit(
    rt: Runtime, *, top: int, after: str | None, integration_id: str | None, since: datetime | None,
    until: datetime | None,
) -> tuple[list[dict[str, Any]], str | None]:
    return await AuditStore(rt.tables).page(top=top, after=after, integration_id=integration_id, since=since,
                                            until=until)
