"""The reconciler: every few seconds, bring each active study in line with its Ray job (service.jobs):
relaunch a driver that died or whose job the cluster no longer knows, finish cancels. Runs in the API process
(its blocking calls in a worker thread, off the event loop); several API processes may run it at once.

A cluster that does not answer changes nothing: the reconciler waits, doubling its interval up to
RECONCILE_BACKOFF_MAX_S, and logs once when the cluster goes away and once when it is back.
"""

from __future__ import annotations

import asyncio
import logging
import time

from service.jobs import ClusterAway, JobLauncher, reconcile_all
from service.settings import Settings
from studies.records import RecordStore

log = logging.getLogger(__name__)
RECONCILE_BACKOFF_MAX_S = 60.0


async def reconcile_forever(store: RecordStore, jobs: JobLauncher, settings: Settings) -> None:
    interval = delay = settings.reconcile_interval_s
    away_since: float | None = None
    while True:
        try:
            await asyncio.to_thread(reconcile_all, store, jobs, settings.max_driver_attempts)
            if away_since is not None:
                log.warning("the Ray cluster answers again (after %.0f s away); reconciling every %g s", time.monotonic() - away_since,
                            interval)
            away_since, delay = None, interval
        except ClusterAway as exc:
            if away_since is None:
                away_since = time.monotonic()
                log.warning("the Ray cluster does not answer (%s): studies keep their state; retrying, backing off up to %g s",
                            exc, RECONCILE_BACKOFF_MAX_S)
            delay = min(delay * 2, RECONCILE_BACKOFF_MAX_S)
        except Exception as exc:  # noqa: BLE001 — keep reconciling
            log.warning("reconcile: %s", exc)
        await asyncio.sleep(delay)
