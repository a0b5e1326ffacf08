"""Changing an integration after registration: `PATCH /api/integrations/{id}` (docs/api.md).

What may change is what a person chose at registration and may choose again: the name, the tenant
filter (multi-tenant), the Defender and optional-entity choices, and whether it syncs (`active` or
`disabled`). Credentials change through `PUT .../secrets`, never here. Each change is validated as
registration validates it, and applied with one guarded update of the stored record
(`shared.stores.tables.guarded_update`), so a concurrent change by memsync itself (discovery, the expiry
check) is never lost. `expected` carries the request's If-Match: a record that no longer matches the
version the person saw is refused (`ChangedMeanwhile`, HTTP 412), read again on every attempt.

What follows from a change: a new tenant filter marks the known tenants `excluded` (or `pending` again)
at once; the next sync reads what `collect` and `includeDefender` now choose (and clears the joins of
what is no longer collected); a disabled integration is skipped by the schedule and by queued jobs; a
consent made from now on asks for the permissions of the new choice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from shared.entities import entity
from shared.errors import ChangedMeanwhile, Conflict, ErrorCode, FieldProblem, InvalidInput
from shared.models import Integration, IntegrationChange, IntegrationKind, IntegrationStatus
from shared.services.fanout import apply_tenant_filter
from shared.services.registration import update_integration

if TYPE_CHECKING:
    from shared.runtime import Runtime

log = logging.getLogger(__name__)


def changed(current: Integration, change: IntegrationChange) -> Integration:
    """The integration with `change` applied, or why not (`InvalidInput`, `Conflict`). Pure."""
    problems: list[FieldProblem] = []
    update: dict[str, object] = {}
    if change.display_name is not None:
        update["display_name"] = change.display_name
    if change.tenant_filter is not None:
        if current.kind != IntegrationKind.MULTI_TENANT:
            problems.append(FieldProblem(
                "tenantFilter", ErrorCode.NOT_MULTI_TENANT, "A singleTenant integration syncs its one tenant; it "
                "has no tenantFilter.", "Leave tenantFilter out, or disable the integration instead."))
        else:
            update["tenant_filter"] = change.tenant_filter
    include_defender = current.include_defender if change.include_defender is None else change.include_defender
    update["include_defender"] = include_defender
    collect = change.collect if change.collect_given else current.collect
    if change.collect_given:
        update["collect"] = collect
    defender_only = [n for n in (collect or []) if entity(n).source.service == "defender"]
    if defender_only and not include_defender:
        field = "collect" if change.collect_given else "includeDefender"
        problems.append(FieldProblem(
            field, ErrorCode.INVALID_VALUE, f"collect names {', '.join(defender_only)}, which is read from "
            "Defender for Endpoint, while includeDefender is false.",
            "Set includeDefender true, or leave those entities out of collect."))
    if change.status is not None:
        if change.status == "active" and current.status == IntegrationStatus.DISABLED and not current.secrets:
            raise Conflict(ErrorCode.INTEGRATION_DISABLED, "status", "This integration was deleted (DELETE): its "
                           "secrets are gone from Key Vault, so it cannot sync again.",
                           "Register the apps again with POST /api/integrations.")
        if change.status == "disabled":
            update["status"] = IntegrationStatus.DISABLED
        elif current.status == IntegrationStatus.DISABLED:
            update["status"] = IntegrationStatus.ACTIVE  # an integration in `error` stays so until it syncs
    if problems:
        raise InvalidInput(problems)
    return current.model_copy(update=update)


async def change_integration(
    rt: Runtime,
    integration_id: str,
    change: IntegrationChange,
    *,
    expected: Callable[[Integration], bool] | None = None,
) -> Integration:
    """Apply `change` to the stored integration (`changed`), If-Match `expected`; NotFound when it does not
    exist. A new tenant filter is applied to the known tenants before this returns."""

    def apply(current: Integration) -> Integration:
        if expected is not None and not expected(current):
            raise ChangedMeanwhile("integration", "Read it again (GET /api/integrations/{id}: its ETag), check "
                                   "the other change, and send yours with the new ETag.")
        return changed(current, change)

    updated = await update_integration(rt, integration_id, apply)
    log.info("integration %s changed: %s", integration_id, ", ".join(change.fields()) or "nothing")
    if change.tenant_filter is not None and updated.kind == IntegrationKind.MULTI_TENANT:
        await apply_tenant_filter(rt, updated)
    return updated
