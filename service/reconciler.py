"""The reconciler: every few seconds, bring each active study in line with its Ray job (service.jobs),
relaunching a driver that died. Runs in the API process; several API processes may run it at once."""

from __future__ import annotations

import asyncio
import logging

from service.jobs import JobLauncher, reconcile_all
from service.settings import Settings
from studies.records import RecordStore

log = logging.getLogger(__name__)


async def reconcile_forever(store: RecordStore, jobs: JobLauncher, settings: Settings) -> None:
    while True:
        try:
            await asyncio.to_thread(reconcile_all, store, jobs, settings.max_driver_attempts)
        except Exception as exc:  # noqa: BLE001 — keep reconciling
            log.warning("reconcile: %s", exc)
        await asyncio.sleep(settings.reconcile_interval_s)
