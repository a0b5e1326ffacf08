"""The sync: the scheduled fan-out timer and the per-tenant queue worker.

`sync_schedule` runs on MEMSYNC_SYNC_SCHEDULE and queues one job per customer tenant of every enabled
integration on `memsync-sync` (shared.services.fanout). `sync_tenant` takes one job and syncs that tenant
(shared.services.tenant_sync): a malformed message is logged with its reason and completed; a permanent
failure completes with the tenant in `error`; a transient one raises so the host retries and, after
host.json's maxDequeueCount, moves the message to `memsync-sync-poison`, where it stays for a person to
see. The last delivery that fails raises a `syncPoisoned` alert naming the integration and tenant
(shared.services.tenant_sync, shared.services.alerting) before the host moves the message.
https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue-trigger#poison-messages
"""

from __future__ import annotations

import logging

import azure.functions as func

from functions.runtime import runtime
from shared.services import tenant_sync
from shared.services.fanout import enqueue_all

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # azure-functions ships it untyped
log = logging.getLogger(__name__)


@bp.timer_trigger(schedule="%MEMSYNC_SYNC_SCHEDULE%", arg_name="timer", run_on_startup=False,
                  use_monitor=True)
async def sync_schedule(timer: func.TimerRequest) -> None:
    if timer.past_due:
        log.info("scheduled sync is past due; running now")
    report = await enqueue_all(await runtime.get(), "schedule")
    log.info("scheduled sync queued: %s", report)


@bp.queue_trigger(arg_name="msg", queue_name="memsync-sync", connection="AzureWebJobsStorage")
async def sync_tenant(msg: func.QueueMessage) -> None:
    try:
        job = tenant_sync.parse_job(msg.get_body())
    except tenant_sync.InvalidSyncJob as exc:
        log.warning("queue message %s completed without a sync: %s", msg.id, exc)
        return
    # A dequeue count above 1 means an earlier attempt on this message failed or died: the attempt may take
    # over the tenant lease that attempt left (shared.services.tenant_sync._claim).
    rt = await runtime.get()
    result = await tenant_sync.sync_tenant(rt, job, attempt=msg.dequeue_count or 1,
                                           budget_seconds=rt.settings.sync_budget_seconds)
    log.info("sync job %s for tenant %s: %s %s", job.run_id, job.tenant_id, result.outcome, result.reason)

