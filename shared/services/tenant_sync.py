"""The per-tenant sync: one queue job -> the tenant's devices, software and Defender health in Table
Storage, a run record and the tenant's status.

At least once. A job may arrive twice, or after a worker died mid-sync. Writes are idempotent (row =
Microsoft id, unchanged content is not rewritten), removals only follow a complete listing, and a lease
on the tenant row (status `syncing` + `lastRunId` + a token per attempt, `leaseId`, until `leaseUntil`;
claimed with an ETag-guarded replace) keeps two workers off one tenant. Only the attempt holding the
token writes the final status. The lease outlives the function timeout (host.json: 10 min), so an
expired one belongs to a dead worker and may be taken over; so may a live one of the same run by a
redelivery of its message (the host redelivers only after the attempt that held it failed or died).

Failures stay with their tenant. What Microsoft said becomes one error code and action
(`shared.errors`). Permanent ones (a person must act) end the job with the tenant in `error`, and no
further request is sent for it; transient ones (throttled past the budget, unreachable) are recorded and
raised as `TransientSyncError`, so the Functions host retries the message and eventually poisons it.

Defender is optional: when it cannot be read the tenant still syncs and ends `ok`, with
`error = {code: defenderUnavailable, ...}` noted, and devices keep their last known Defender fields
(nothing is erased on a failed read). So is every optional entity (`shared.entities.Entity.optional`):
one the integration does not collect is not read; one the tenant does not grant, or Microsoft refuses,
is a note on the tenant's status, its rows kept as they are.

Joins. A device carries the Autopilot identity, the Entra ID device and the vulnerability summary of its
machine (`shared.mapping.joins`). Those listings run beside the device listing; the devices' first page
waits for them (as it waits for Defender's machines), so each device is written once, joined. A join
whose listing was not read this time keeps the device's stored summary; one the integration does not
collect is cleared.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError

from shared.auth import AppCredential, token_roles
from shared.clients.apis import Apis, Service
from shared.clients.defender import (
    DefenderClient,
    defender_not_found,
    defender_read_error,
    defender_unavailable,
)
from shared.clients.exports import EXPORT_MAX_WAIT_SECONDS, ExportJobsClient
from shared.clients.graph import GraphClient, graph_error, missing_permissions
from shared.entities import (
    AUTOPILOT_DEVICES,
    DEVICES,
    ENTRA_DEVICES,
    OTHER_LISTED,
    SOFTWARE,
    VULNERABILITIES,
    Entity,
    collects,
)
from shared.errors import ActionableError, ErrorCode, ErrorInfo, permission_missing, throttled, unreachable
from shared.http import ApiClient, ApiError, Budget, CallStats, RetriableApiError
from shared.mapping.changes import PartitionDiff, StoredState, stamp
from shared.mapping.devices import DefenderIndex, record_id
from shared.mapping.joins import AutopilotIndex, EntraIndex
from shared.mapping.tenants import organization_names
from shared.mapping.text import SkippedRecord
from shared.mapping.vulnerabilities import VulnerabilityTally
from shared.models import (
    AppRole,
    CustomerTenant,
    ErrorModel,
    Integration,
    IntegrationKind,
    IntegrationStatus,
    TenantCounts,
    TenantStatus,
)
from shared.services.alerting import raise_credential_alert, raise_poisoned_sync_alert
from shared.services.credentials import app_credential
from shared.services.inventory import InventorySync
from shared.stores.assets import AssetStore
from shared.stores.device_software import DeviceSoftwareStore
from shared.stores.queues import SyncJob
from shared.stores.runs import RunRecord, RunStore
from shared.stores.tables import Contended, utcnow

if TYPE_CHECKING:
    from shared.runtime import Runtime

log = logging.getLogger(__name__)

# host.json functionTimeout is 10 minutes; the reads get 8, the final writes the rest.
SYNC_BUDGET_SECONDS = 8 * 60.0
LEASE_MINUTES = 10
# host.json's extensions.queues.maxDequeueCount: the host moves a message to `memsync-sync-poison` after
# this many failed deliveries (a unit test keeps the two equal).
# https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue#host-json
MAX_DELIVERIES = 5
CREDENTIAL_CODES = frozenset({ErrorCode.SECRET_EXPIRED, ErrorCode.INVALID_SECRET})


class InvalidSyncJob(ValueError):
    """A queue message that is not a sync job; completed (not retried) after logging the reason."""


class TransientSyncError(RuntimeError):
    """The sync failed for a reason a retry may fix; raised so the host redelivers the message."""

    def __init__(self, error: ErrorInfo) -> None:
        super().__init__(f"{error.code.value}: {error.message}")
        self.error = error


def parse_job(body: bytes | str) -> SyncJob:
    """Validate a queue message against the documented sync job (docs/api.md, The sync queue); the reason never
    echoes the whole body."""
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        data = json.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidSyncJob(f"message is not JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise InvalidSyncJob(f"message is JSON {type(data).__name__}, not an object")
    try:
        return SyncJob.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'message'}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise InvalidSyncJob(f"message is not a sync job ({problems})") from None


Outcome = Literal["ok", "error", "ignored", "busy", "alreadyDone"]


@dataclass
class SyncResult:
    outcome: Outcome
    reason: str = ""
    error: ErrorInfo | None = None
    run: RunRecord | None = None


# -- claiming the tenant -------------------------------------------------------------------------


@dataclass(frozen=True)
class Lease:
    """One sync attempt's hold on its tenant: the token on the tenant row and when it lapses."""

    id: str
    until: datetime
    run_id: str
    tenant_name: str | None = None  # the tenant's display name as stored when the lease was taken


def lease_expires(tenant: CustomerTenant) -> datetime | None:
    """When a `syncing` tenant's lease lapses (rows from before `leaseUntil` derive it from the start)."""
    if tenant.lease_until is not None:
        return tenant.lease_until
    started = tenant.last_sync_started_at
    return None if started is None else started + timedelta(minutes=LEASE_MINUTES)


def lease_live(tenant: CustomerTenant) -> bool:
    """Whether a sync attempt holds the tenant now (it is `syncing` and its lease has not lapsed)."""
    expires = lease_expires(tenant)
    return tenant.status == TenantStatus.SYNCING and expires is not None and utcnow() < expires


def _belongs(integration: Integration, tenant_id: str) -> bool:
    if integration.kind == IntegrationKind.SINGLE_TENANT:
        return (integration.tenant_id or "").lower() == tenant_id.lower()
    return True


class _Refused(Exception):
    """Raised by a lease `change` to leave the tenant row as it is, with the outcome to report."""

    def __init__(self, outcome: SyncResult) -> None:
        super().__init__(outcome.reason)
        self.outcome = outcome


def claimed(
    tenant: CustomerTenant, integration: Integration, job: SyncJob, started: datetime, attempt: int, lease: Lease
) -> CustomerTenant:
    """The tenant row with this attempt's lease on it, or `_Refused` with why it may not sync now.

    A live lease keeps other jobs off the tenant, and also a second copy of this job (a message the
    queue delivered twice). The exception is a redelivery (`attempt` > 1) meeting a lease of its own
    run: the host keeps a message invisible while its function runs, so it hands the message out again
    only after the attempt that held it failed or died (host killed, storage gone mid-write), and that
    attempt's lease is an orphan to take over, not a sync to wait for.
    https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue-trigger#poison-messages
    """
    if tenant.status == TenantStatus.EXCLUDED or not integration.tenant_filter.admits(job.tenant_id):
        raise _Refused(SyncResult("ignored", "the tenant is excluded by the integration's tenantFilter"))
    same_run = tenant.last_run_id == job.run_id
    if lease_live(tenant):
        if not (same_run and attempt > 1):
            who = "this job" if same_run else f"run {tenant.last_run_id}"
            raise _Refused(SyncResult("busy", f"the tenant is being synced by {who} (lease not expired)"))
        log.warning("tenant %s: attempt %d of run %s takes over the lease its previous attempt left "
                    "(started %s)", job.tenant_id, attempt, job.run_id, tenant.last_sync_started_at)
    if same_run and tenant.status == TenantStatus.OK:
        raise _Refused(SyncResult("alreadyDone", "this run already completed for the tenant"))
    return tenant.model_copy(update={
        "status": TenantStatus.SYNCING, "last_sync_started_at": started, "last_run_id": job.run_id,
        "lease_id": lease.id, "lease_until": lease.until,
    })


def released(tenant: CustomerTenant, lease: Lease, apply: dict[str, Any]) -> CustomerTenant:
    """The tenant row with the final status and no lease, or `_Refused` when another attempt took the
    lease over meanwhile (an expired lease, or a redelivery of this job that presumed this one dead)."""
    if tenant.lease_id != lease.id:
        log.warning("tenant %s: this attempt of run %s lost its lease (now run %s's, status %s); not writing "
                    "status", tenant.tenant_id, lease.run_id, tenant.last_run_id, tenant.status.value)
        raise _Refused(SyncResult("busy", "another attempt took the tenant's lease over"))
    return tenant.model_copy(update={**apply, "lease_id": None, "lease_until": None})


async def _claim(
    rt: Runtime, integration: Integration, job: SyncJob, started: datetime, attempt: int
) -> Lease | SyncResult:
    """Take the tenant's lease for this attempt of the job (`claimed`), or say why not."""
    if not _belongs(integration, job.tenant_id):
        return SyncResult("ignored", "the tenant is not one of this integration's tenants")
    lease = Lease(str(uuid.uuid4()), started + timedelta(minutes=LEASE_MINUTES), job.run_id)
    try:
        tenant = await rt.tenants.update(
            integration.id, job.tenant_id, lambda t: claimed(t, integration, job, started, attempt, lease))
    except _Refused as refused:
        return refused.outcome
    except Contended:
        return SyncResult("busy", "the tenant row kept changing while claiming it")
    if tenant is None:
        return SyncResult("ignored", "the tenant is not one of this integration's tenants")
    return Lease(lease.id, lease.until, lease.run_id, tenant.display_name)


async def _release(rt: Runtime, integration_id: str, job: SyncJob, lease: Lease, apply: dict[str, Any]) -> bool:
    """Write the final status and drop the lease (`released`); False when the lease was lost or the
    integration deleted meanwhile."""
    try:
        return await rt.tenants.update(integration_id, job.tenant_id, lambda t: released(t, lease, apply)) is not None
    except _Refused:
        return False
    except Contended:
        log.warning("tenant %s: could not write the final status (row kept changing)", job.tenant_id)
        return False


# -- the sync itself -----------------------------------------------------------------------------


@dataclass
class ListingResult:
    diff: PartitionDiff
    joined: int = 0  # assets whose declared join field (`Entity.join_field`) found a partner
    facts: dict[str, int] = field(default_factory=dict)  # `Entity.facts` summed over the listed assets


Index = AutopilotIndex | EntraIndex | VulnerabilityTally
# The listings a device joins: entity -> (the device field it fills, the index its listing feeds).
JOINS: dict[str, tuple[str, Callable[[], Index]]] = {
    AUTOPILOT_DEVICES.name: ("autopilot", AutopilotIndex),
    ENTRA_DEVICES.name: ("entraDevice", EntraIndex),
    VULNERABILITIES.name: ("vulnerabilities", VulnerabilityTally),
}
TENANT_NAME = "tenantDisplayName"  # a column of every asset row, not an output field
KEEP: Literal["keep"] = "keep"  # a join whose listing was not read this time: devices keep their stored summary
Join = Index | Literal["keep"] | None  # None: not collected, the summary is cleared


@dataclass
class TenantSync:
    """Reads one tenant and writes its assets; built per job from what it uses: Microsoft's APIs
    (`Apis`, which the runtime holds), the sync app's credential, and the asset and inventory stores."""

    apis: Apis
    credential: Callable[[], Awaitable[AppCredential]]
    integration: Integration
    tenant_id: str
    stats: CallStats
    budget: Budget
    now: str
    assets: AssetStore
    inventory_store: DeviceSoftwareStore
    notes: list[ErrorInfo] = field(default_factory=list)
    stored_name: str | None = None  # the tenant's display name as stored before this sync
    display_name: str | None = None
    default_domain_name: str | None = None
    with_inventory: bool = True
    export_max_wait: float = EXPORT_MAX_WAIT_SECONDS
    inventory: InventorySync | None = None
    inventory_notes: list[ErrorInfo] = field(default_factory=list)
    listings: dict[str, ListingResult] = field(default_factory=dict)  # `OTHER_LISTED` entities read in full
    entity_notes: list[ErrorInfo] = field(default_factory=list)  # optional entities left out (after `notes`)
    _app: AppCredential | None = None
    _roles: frozenset[str] = frozenset()
    _defender_roles: frozenset[str] | None = None
    _devices_answered: asyncio.Event = field(default_factory=asyncio.Event)
    _joins: dict[str, asyncio.Future[Join]] = field(default_factory=dict)
    _named: asyncio.Event = field(default_factory=asyncio.Event)  # set once /organization answered (or not)

    def collects(self, entity: Entity) -> bool:
        return collects(entity, include_defender=self.integration.include_defender,
                        collect=self.integration.collect)

    def _api(self, area: str, *, service: Service = "graph", label: str | None = None) -> ApiClient:
        assert self._app is not None
        return self.apis.api(self.tenant_id, self._app, area, self.budget, self.stats, service=service,
                             label=label or area)

    async def _read_error(self, exc: ApiError, entity: Entity) -> ActionableError:
        """What a service's refusal of an entity's listing means, as one code and action."""
        if entity.source.service == "defender":
            assert self._app is not None
            return defender_read_error(exc, what=entity.name, permission=entity.permission.name,
                                       tenant_id=self.tenant_id, app_id=self._app.app_id,
                                       roles=self._defender_roles or frozenset())
        return self._graph_error(exc, entity.permission_area)

    def _graph_error(self, exc: ApiError, area: str) -> ActionableError:
        assert self._app is not None
        return graph_error(exc, area=area, tenant_id=self.tenant_id, app_id=self._app.app_id,
                           roles=self._roles)

    async def run(self) -> tuple[ListingResult, ListingResult]:
        settings = self.apis.settings
        self._app = await self.credential()
        # The first token proves the credential; a refusal here (expired secret, no consent) is final.
        graph_token = await self.apis.tokens.get_token(self.tenant_id, self._app, settings.cloud.graph_scope)
        self._roles = token_roles(graph_token)
        missing = missing_permissions("devices", self._roles)
        if missing:
            raise permission_missing(missing, app_id=self._app.app_id, tenant_id=self.tenant_id)
        graph = GraphClient(
            settings.graph_url + "/v1.0",
            directory=self._api("graphDirectory", label="graph"),
            devices=self._api("intuneDevices"),
            apps=self._api("intuneApps"),
        )
        loop = asyncio.get_running_loop()
        # The joined listings this sync runs (each resolves its future, read or not); devices wait for them.
        self._joins = {e.name: loop.create_future() for e in OTHER_LISTED if e.name in JOINS}
        # Stored state loads while the first pages are on their way (a listing needs it only to diff).
        async with asyncio.timeout(max(1.0, self.budget.remaining())), asyncio.TaskGroup() as tasks:
            device_state = tasks.create_task(
                self.assets.load_state("devices", self.integration.id, self.tenant_id))
            app_state = tasks.create_task(
                self.assets.load_state("software", self.integration.id, self.tenant_id))
            tasks.create_task(self._organization(graph))
            defender = (tasks.create_task(self._defender_index()) if self.integration.include_defender
                        else None)
            software = tasks.create_task(self._sync_listing(SOFTWARE, graph, app_state))
            devices = tasks.create_task(self._sync_devices(graph, device_state, defender))
            for other in OTHER_LISTED:
                tasks.create_task(self._sync_other(other, graph))
            if self.with_inventory:
                tasks.create_task(self._sync_inventory(graph, software))
        return devices.result(), software.result()

    async def _sync_inventory(self, graph: GraphClient, software: asyncio.Task[ListingResult]) -> None:
        """Per-device software from one export job (fallback: per app); a failure is only a note."""
        store = self.inventory_store
        stored = asyncio.ensure_future(store.load_hashes(self.integration.id, self.tenant_id))
        try:
            # Started once Intune answered the device listing: a tenant without Intune (or without the
            # permission) gets no export request after its refusal.
            await self._devices_answered.wait()
            exports = ExportJobsClient(self.apis.settings.graph_url + "/v1.0", graph.apps_api, self.apis.http,
                                       budget=self.budget, max_wait=self.export_max_wait)

            async def app_ids() -> list[str]:
                return sorted((await software).diff.seen)

            self.inventory = InventorySync(graph, exports, store, self.integration.id, self.tenant_id)
            note = await self.inventory.run(app_ids, stored)
        finally:
            if not stored.done():
                stored.cancel()
        if note is not None:
            log.warning("tenant %s: %s", self.tenant_id, note.message)
            self.inventory_notes.append(note)

    async def _organization(self, graph: GraphClient) -> None:
        """The tenant's own name and default domain; a failure here only leaves the old names."""
        try:
            org = await graph.organization()
        except ApiError as exc:
            log.info("tenant %s: /organization not read (%s)", self.tenant_id, exc)
            return
        finally:
            self._named.set()
        if org:
            self.display_name, self.default_domain_name = organization_names(org)

    async def _defender_index(self) -> DefenderIndex | ActionableError:
        """Every Defender machine of the tenant, by Entra device id; or why Defender is unavailable."""
        assert self._app is not None
        app, settings = self._app, self.apis.settings
        index = DefenderIndex()
        try:
            client = DefenderClient(settings.defender_url, self._api("defender", service="defender"))
            async for page in client.machines():
                for machine in page:
                    index.add(machine)
            if client.not_found:
                self.notes.append(defender_not_found(self.tenant_id).info)
        except (ApiError, ActionableError) as exc:
            error = defender_unavailable(exc, tenant_id=self.tenant_id, app_id=app.app_id)
            log.warning("tenant %s: %s", self.tenant_id, error.info.message)
            return error
        return index

    async def _roles_for(self, entity: Entity) -> frozenset[str]:
        """The application permissions the tenant grants on the entity's service (its token's roles)."""
        if entity.source.service == "graph":
            return self._roles
        if self._defender_roles is None:
            assert self._app is not None
            token = await self.apis.tokens.get_token(self.tenant_id, self._app,
                                                     self.apis.settings.cloud.defender_scope)
            self._defender_roles = token_roles(token)
        return self._defender_roles

    def _consent_hint(self) -> str:
        """For a customer of an MSP: the consent memsync makes itself, with every permission it collects with."""
        if self.integration.kind != IntegrationKind.MULTI_TENANT:
            return ""
        return (f" memsync can consent for you: POST /api/integrations/{self.integration.id}/tenants/"
                f"{self.tenant_id}/consent (after a partner admin signed in) asks Partner Center for every "
                "permission the integration's chosen entities need.")

    def _joined(self, name: str, value: Join) -> None:
        future = self._joins.get(name)
        if future is not None and not future.done():
            future.set_result(value)

    async def _sync_other(self, entity: Entity, graph: GraphClient) -> None:
        """A listed entity beyond devices and software. One the integration does not collect is not read;
        an optional one the tenant does not grant (its permission absent from the token, or Microsoft
        refusing it) is a note, its stored rows kept. A listing that devices join feeds their index."""
        if not self.collects(entity):
            self._joined(entity.name, None)
            return
        join = JOINS.get(entity.name)
        index = join[1]() if join is not None else None
        try:
            if entity.optional:
                lacking = missing_permissions(entity.permission_area, await self._roles_for(entity))
                if lacking:
                    assert self._app is not None
                    self.entity_notes.append(not_collected(entity.name, permission_missing(
                        lacking, app_id=self._app.app_id, tenant_id=self.tenant_id), self._consent_hint()).info)
                    return
            state = asyncio.ensure_future(self.assets.load_state(entity.name, self.integration.id, self.tenant_id))
            self.listings[entity.name] = await self._sync_listing(
                entity, graph, state, observe=index.add if index is not None else None)
            self._joined(entity.name, index)
        except ActionableError as exc:
            if not entity.optional or exc.retriable:
                raise
            self.entity_notes.append(not_collected(entity.name, exc, self._consent_hint()
                                                   if exc.code == ErrorCode.PERMISSION_MISSING else "").info)
        finally:
            self._joined(entity.name, KEEP)  # not read in full: devices keep what they had

    async def _sync_devices(
        self,
        graph: GraphClient,
        state: asyncio.Task[tuple[dict[str, StoredState], str | None]],
        defender: asyncio.Task[DefenderIndex | ActionableError] | None,
    ) -> ListingResult:
        """Devices, joined to Defender's machines and the other joined listings once the first page is in
        (those were read meanwhile)."""
        index: DefenderIndex | ActionableError | None = None
        joins: dict[str, Join] = {}
        today = date.fromisoformat(self.now[:10])  # the sync's UTC day: each device's OS support on it

        async def first_page() -> None:
            nonlocal index
            self._devices_answered.set()
            if defender is not None:
                index = await defender
            for name, future in self._joins.items():
                joins[name] = await future

        def joined(raw: dict[str, Any], known: StoredState | None) -> dict[str, Any]:
            defender = _defender_of(raw, index, known)
            machine = (defender or {}).get("machineId")
            found: dict[str, Any] = {}
            for name, (field_name, _) in JOINS.items():
                source = joins.get(name)
                if source == KEEP:
                    found[field_name] = known.nested.get(field_name) if known is not None else None
                elif isinstance(source, VulnerabilityTally):
                    found[field_name] = source.summary(machine)
                elif isinstance(source, AutopilotIndex | EntraIndex):
                    found[field_name] = source.match(raw)
            return {"defender": defender, "joins": found, "today": today}

        result = await self._sync_listing(DEVICES, graph, state, first_page=first_page, extra=joined)
        if isinstance(index, ActionableError):
            self.notes.append(index.info)
        return result

    async def _sync_listing(
        self,
        entity: Entity,
        graph: GraphClient,
        state: asyncio.Task[tuple[dict[str, StoredState], str | None]],
        *,
        first_page: Callable[[], Awaitable[None]] | None = None,
        extra: Callable[[dict[str, Any], StoredState | None], dict[str, Any]] | None = None,
        observe: Callable[[dict[str, Any]], None] | None = None,
    ) -> ListingResult:
        """One entity's listing, for every listed entity alike: stream its pages, map each record, diff it
        against the stored state, write what changed in batches; and only after the whole listing was
        read, mark what it did not contain as removed (`shared.mapping.changes`).

        `first_page` runs when the first page has arrived; `extra(raw, stored)` adds mapper arguments
        (the devices' joined summaries); `observe(asset)` sees each asset read (a join's index).
        """
        assert entity.mapper is not None
        pages: AsyncIterator[list[dict[str, Any]]]
        if entity.source.service == "defender":
            api = self._api(entity.rate_limit_area, service="defender")
            client = DefenderClient(self.apis.settings.defender_url, api)
            pages = client.pages(entity.source.path, page_size=entity.source.page_size)
        else:
            api = self._api(entity.rate_limit_area)
            pages = graph.pages(api, entity.source.path, entity.source.params())
        writer = self.assets.writer(entity.name, self.integration.id, self.tenant_id)
        failure: ActionableError | None = None
        first = asyncio.ensure_future(anext(pages, None))  # the first page is fetched while state loads
        try:
            existing, listed_at = await state
        except BaseException:
            first.cancel()
            raise
        result = ListingResult(PartitionDiff(existing, self.now, listed_at),
                               facts=dict.fromkeys(entity.fact_keys, 0))
        diff = result.diff
        try:
            page = await first
            # Every asset row carries its tenant's name (for a BI tool); /organization answers with the
            # first pages. A new name rewrites the rows once (it is part of their content).
            await self._named.wait()
            tenant_name = self.display_name or self.stored_name
            if first_page is not None and page is not None:
                await first_page()
            while page is not None:
                for raw in page:
                    try:
                        raw_id = raw.get("id")
                        known = existing.get(raw_id) if isinstance(raw_id, str) else None
                        asset = entity.mapper(raw, tenant_id=self.tenant_id,
                                              **(extra(raw, known) if extra is not None else {}))
                    except SkippedRecord as exc:
                        diff.skip(record_id(raw), str(exc))
                        log.info("tenant %s: %s %s skipped: %s", self.tenant_id, entity.name, record_id(raw), exc)
                        continue
                    if tenant_name:
                        asset[TENANT_NAME] = tenant_name
                    seen_before = len(diff.seen)
                    op = diff.observe(asset)
                    if len(diff.seen) > seen_before:  # first time in this listing
                        if entity.join_field and asset.get(entity.join_field):
                            result.joined += 1
                        if observe is not None:
                            observe(asset)
                        if entity.facts is not None:
                            for name, n in entity.facts(asset).items():
                                result.facts[name] = result.facts.get(name, 0) + n
                    if op is not None:
                        await writer.add(op)
                page = await anext(pages, None)
        except ApiError as exc:
            failure = await self._read_error(exc, entity)
        await writer.close()  # what was read is stored either way; removals need the whole listing
        if failure is not None:
            raise failure
        if entity.marks_removed:
            await writer.add_all(diff.finish(complete=True))
            await writer.close()
        diff.counts.skipped += writer.failed
        await self.assets.mark_listed(entity.name, self.integration.id, self.tenant_id, self.now)
        return result


def not_collected(name: str, why: ActionableError, hint: str = "") -> ActionableError:
    """An optional entity left out of this sync: the reason's code and action, said about the entity
    (`hint`: what else would fix it, appended to the action)."""
    return ActionableError(why.code, f"{name} not collected: {why.info.message}", why.info.action + hint,
                           retriable=why.retriable)


def records_skipped(tenant_id: str, devices: PartitionDiff, software: PartitionDiff) -> ErrorInfo | None:
    """The tenant's note when listed records could not be read: how many, and why (each kept its stored
    copy and stays present). None when every record was read."""
    parts = [f"{sum(d.reasons.values())} {what}"
             for what, d in (("devices", devices), ("software titles", software)) if d.reasons]
    if not parts:
        return None
    reasons = "; ".join(r for r in (devices.skipped_reasons(), software.skipped_reasons()) if r)
    return ErrorInfo(
        ErrorCode.RECORDS_SKIPPED,
        f"{' and '.join(parts)} of tenant {tenant_id} were listed by Microsoft but could not be read "
        f"({reasons}). Each keeps its last stored copy and was not marked removed; the rest synced.",
        "No action is needed in the tenant; if it repeats on every sync, report the reasons above so "
        "memsync can read these values.",
    )


def _defender_of(
    raw: dict[str, Any], index: DefenderIndex | ActionableError | None, known: StoredState | None
) -> dict[str, Any] | None:
    if index is None:
        return None  # Defender not included for this integration
    if isinstance(index, ActionableError):
        return known.nested.get("defender") if known is not None else None  # keep the last known values
    aad = raw.get("azureADDeviceId")
    found = index.match(aad if isinstance(aad, str) else None)
    return found.to_json() if found is not None else None


def _first_error(group: BaseExceptionGroup[Any]) -> BaseException:
    """From a TaskGroup's failures, the one to report: a permanent error first, then any other."""
    flat: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            flat.append(exc)

    walk(group)
    permanent = [e for e in flat if isinstance(e, ActionableError) and not e.retriable]
    return (permanent or flat)[0]


def _as_actionable(exc: BaseException) -> ActionableError | None:
    if isinstance(exc, ActionableError):
        return exc
    if isinstance(exc, RetriableApiError):
        return throttled(exc.service) if exc.throttled else unreachable(exc.service, str(exc))
    if isinstance(exc, TimeoutError):
        return throttled("Microsoft Graph")
    return None


async def _raise_poisoned_alert(rt: Runtime, job: SyncJob) -> None:
    """The last delivery failed: the host moves the job to `memsync-sync-poison` (where it stays for a person
    to see) once this attempt ends; tell them now (`syncPoisoned`, shared.services.alerting)."""
    try:
        await raise_poisoned_sync_alert(rt, job)
    except Exception:  # an alert that cannot be raised must not hide the failure the host records
        log.exception("tenant %s: raising the poisoned-sync alert of run %s failed", job.tenant_id, job.run_id)


async def _raise_credential_alert(rt: Runtime, integration: Integration, error: ActionableError) -> None:
    """Tell the alerting service (shared.services.alerting) when the sync app's secret is expired or wrong."""
    try:
        await raise_credential_alert(rt, integration, AppRole.SYNC, error)
    except Exception:  # an alert that cannot be sent must not fail the sync's bookkeeping
        log.exception("integration %s: raising the credential alert failed", integration.id)


async def sync_tenant(
    rt: Runtime,
    job: SyncJob,
    *,
    attempt: int = 1,
    budget_seconds: float = SYNC_BUDGET_SECONDS,
    export_max_wait: float = EXPORT_MAX_WAIT_SECONDS,
) -> SyncResult:
    """Sync one tenant for one job. Returns how it ended; raises `TransientSyncError` to be retried."""
    integration = await rt.integrations.get_integration(job.integration_id)
    if integration is None:
        return _ignored(job, "the integration does not exist (deleted?)")
    if integration.status == IntegrationStatus.DISABLED:
        return _ignored(job, "the integration is disabled")
    started = utcnow()
    lease = await _claim(rt, integration, job, started, attempt)
    if isinstance(lease, SyncResult):
        log.info("sync job %s for tenant %s not run: %s", job.run_id, job.tenant_id, lease.reason)
        return lease

    stats = CallStats()
    run = RunRecord(integration.id, job.tenant_id.lower(), job.run_id, job.trigger, started, attempt=attempt)
    sync = TenantSync(rt.apis, lambda: app_credential(rt, integration, AppRole.SYNC), integration,
                      job.tenant_id.lower(), stats, Budget(budget_seconds), stamp(started), AssetStore(rt.tables),
                      DeviceSoftwareStore(rt.tables), stored_name=lease.tenant_name, export_max_wait=export_max_wait)
    error: ActionableError | None = None
    devices: ListingResult | None = None
    software: ListingResult | None = None
    try:
        devices, software = await sync.run()
    except BaseExceptionGroup as group:
        cause = _first_error(group)
        error = _as_actionable(cause)
        if error is None:
            await _crashed(rt, integration.id, job, lease, run, stats, attempt, cause)
            raise cause from None
    except (ActionableError, RetriableApiError, TimeoutError) as exc:
        error = _as_actionable(exc)
    except Exception as exc:
        await _crashed(rt, integration.id, job, lease, run, stats, attempt, exc)
        raise

    finished = utcnow()
    run.finished_at = finished
    run.calls = stats.to_json()
    if sync.inventory is not None:
        inventory = sync.inventory
        run.calls["inventory"] = {"source": inventory.source, "exportProblem": inventory.export_problem,
                                  "exportPolls": inventory.exports.polls, **inventory.counts.to_json()}
    # Notes about devices and Defender come first, then the optional entities left out (by name).
    sync.notes.extend(sorted(sync.entity_notes, key=lambda n: n.message))
    # Inventory notes go to the run record only: the tenant's status shows what its assets need.
    run.notes = [n.to_json() for n in [*sync.notes, *sync.inventory_notes]]
    status: dict[str, Any] = {"last_sync_finished_at": finished}
    if sync.display_name:
        status["display_name"] = sync.display_name
    if sync.default_domain_name:
        status["default_domain_name"] = sync.default_domain_name
    if error is None and devices is not None and software is not None:
        run.status = "ok"
        run.devices, run.software = devices.diff.counts, software.diff.counts
        run.entities = {name: listing.diff.counts for name, listing in sync.listings.items()}
        run.defender_machines = devices.joined
        skipped = records_skipped(sync.tenant_id, devices.diff, software.diff)
        if skipped is not None:
            sync.notes.append(skipped)
            run.notes.append(skipped.to_json())
        note = sync.notes[0] if sync.notes else None
        status.update(
            status=TenantStatus.OK,
            last_success_at=finished,
            counts=TenantCounts(devices=devices.diff.present(), software=software.diff.present(),
                                defender_machines=devices.joined,
                                skipped=devices.diff.counts.skipped + software.diff.counts.skipped
                                + sum(listing.diff.counts.skipped for listing in sync.listings.values()),
                                entities={name: listing.diff.present() for name, listing in sync.listings.items()},
                                facts={name: listing.facts for name, listing in
                                       [(DEVICES.name, devices), *sync.listings.items()] if listing.facts}),
            error=ErrorModel.of(note),
        )
    else:
        assert error is not None
        run.status = "error"
        run.error = error.info.to_json()
        status.update(status=TenantStatus.ERROR, error=ErrorModel.of(error.info))
    await asyncio.gather(_release(rt, integration.id, job, lease, status), RunStore(rt.tables).record(run))
    log.info("tenant %s run %s: %s %s (%d requests, %d retries)", job.tenant_id, job.run_id, run.status,
             error.code.value if error else "", stats.requests, stats.retries)
    if error is None:
        return SyncResult("ok", run=run)
    if error.code in CREDENTIAL_CODES:
        await _raise_credential_alert(rt, integration, error)
    if error.retriable:
        if attempt >= MAX_DELIVERIES:
            await _raise_poisoned_alert(rt, job)  # the host moves the message to the poison queue now
        raise TransientSyncError(error.info)
    return SyncResult("error", error.info.message, error.info, run)


def crashed(job: SyncJob, exc: BaseException) -> ErrorInfo:
    """Why a tenant whose sync job was poisoned is in `error`: the exception's type only (its text may
    quote customer data), the run, and what to do."""
    return ErrorInfo(
        ErrorCode.INTERNAL,
        f"The sync of this tenant failed on each of its {MAX_DELIVERIES} attempts with an unexpected "
        f"{type(exc).__name__}; its job was moved to the memsync-sync-poison queue.",
        f"memsync tries again on the next scheduled run, or POST /api/integrations/{job.integration_id}/sync "
        f"now. If it fails again, look up run {job.run_id} in the function logs (sync_tenant) and report "
        "the error with that log; the tenant's other data is kept as it was.",
    )


async def _crashed(rt: Runtime, integration_id: str, job: SyncJob, lease: Lease, run: RunRecord,
                   stats: CallStats, attempt: int, exc: BaseException) -> None:
    """A bug: the host redelivers the message, and that attempt takes the lease over. After the last
    delivery the message goes to the poison queue, and the tenant says so (`crashed`) instead of staying
    `syncing`, with the run recorded; best effort, since storage may be what failed. A cancellation (the
    host stopping) is not a crash: the redelivery goes on."""
    if isinstance(exc, asyncio.CancelledError):
        return
    log.error("tenant %s: sync crashed (delivery %d of %d)", job.tenant_id, attempt, MAX_DELIVERIES,
              exc_info=exc)
    if attempt < MAX_DELIVERIES:
        return
    await _raise_poisoned_alert(rt, job)
    info = crashed(job, exc)
    finished = utcnow()
    run.finished_at, run.status, run.error, run.calls = finished, "error", info.to_json(), stats.to_json()
    status = {"status": TenantStatus.ERROR, "error": ErrorModel.of(info), "last_sync_finished_at": finished}
    try:
        await asyncio.gather(_release(rt, integration_id, job, lease, status), RunStore(rt.tables).record(run))
    except Exception:  # the crash is what the host reports; this is only its trace
        log.exception("tenant %s: the crash of run %s could not be recorded", job.tenant_id, job.run_id)


def _ignored(job: SyncJob, reason: str) -> SyncResult:
    log.warning("sync job %s for tenant %s of integration %s ignored: %s", job.run_id, job.tenant_id,
                job.integration_id, reason)
    return SyncResult("ignored", reason)
