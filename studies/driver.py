"""The study driver the service launches as a Ray job: `python -m studies.driver <study-id>`.

Reads the study's spec from the records database (`studies.settings.DriverSettings`: $ACTSTUDY_DATABASE_URL or
$ACTSTUDY_DATABASE_URL_FILE, $MLFLOW_TRACKING_URI, $ACTSTUDY_DATA_DIR), runs it with
`studies.runner.run_study` on the cluster the job runs in, and writes status, progress and results back.
A relaunch of the same study (after the driver died) continues from the study's stores: the search in
Optuna's tables beside the records database, runs and confirmation scores in MLflow, checkpoints under
$ACTSTUDY_DATA_DIR.
"""

from __future__ import annotations

import os
from pathlib import Path


def share_cpu_as_niced() -> None:
    """Give this process's session the CPU share its niceness says. Ray starts each job's driver in a session
    of its own, and Linux (with autogroup scheduling) shares the CPU between sessions first, whatever the nice
    of their processes: a dozen drivers starting at once took the API's CPU however low the Ray head's priority
    (bench/load.py). `studies.local.lower_session_priority` is the same for a process started by us; this module
    stays light until it has run, so it cannot import it."""
    try:
        Path("/proc/self/autogroup").write_text(str(os.nice(0)))
    except OSError:  # no autogroup here
        pass


if __name__ == "__main__":  # before the imports below, which are most of a starting driver's CPU
    share_cpu_as_niced()

import argparse  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from studies.execution import ProgressSink  # noqa: E402
from studies.records import RecordStore, StudyStatus  # noqa: E402
from studies.runner import run_study  # noqa: E402
from studies.settings import DriverSettings  # noqa: E402
from studies.spec import PhaseProgress, SpecError, StudyProgress, StudyResults, StudySpec, allow_user_code, parse_spec  # noqa: E402

log = logging.getLogger("studies.driver")
ERROR_CHARS = 4000  # of a failure's text in the study's record


class RecordSink(ProgressSink):
    """Writes progress to the study's row, at most once every `every_s` seconds (and always at the end)."""

    def __init__(self, store: RecordStore, study_id: str, every_s: float = 1.0) -> None:
        self.store, self.study_id, self.every_s = store, study_id, every_s
        self._last = 0.0
        self.progress = StudyProgress()

    def started(self, spec: StudySpec, study_id: str, parent_url: str | None) -> None:
        self.store.mark(study_id, StudyStatus.running)

    def update(self, progress: PhaseProgress) -> None:
        self.progress.phases[progress.phase] = progress
        self.progress.phase = progress.phase
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self._write()

    def _write(self) -> None:
        try:
            self.store.update(self.study_id, progress=self.progress.plain())
        except Exception as exc:  # noqa: BLE001 — a database blip must not stop the study
            log.warning("could not write progress: %s", exc)

    def finished(self, results: StudyResults) -> None:
        self._write()
        stored = results.plain()
        self.store.mark(self.study_id, StudyStatus.succeeded, results=stored, mlflow=stored["mlflow"], error=None)

    def failed(self, reason: str) -> None:
        self._write()
        self.store.mark(self.study_id, StudyStatus.failed, error=reason)


def _exit_on_sigterm(signum, frame) -> None:
    sys.exit(143)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.driver")
    parser.add_argument("study_id")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    settings = DriverSettings()
    allow_user_code(settings.allow_user_code)
    url, mlflow_uri = settings.records_url(), settings.mlflow_uri
    if not url or not mlflow_uri:
        print("studies.driver: ACTSTUDY_DATABASE_URL (or _FILE) and MLFLOW_TRACKING_URI must be set", file=sys.stderr)
        return 2
    store = RecordStore(url)
    study = store.get(args.study_id)
    if study is None:
        print(f"studies.driver: no study {args.study_id!r} in the records", file=sys.stderr)
        return 2
    if StudyStatus(study.status).terminal:
        log.info("study %s is already %s; nothing to do", study.id, study.status)
        return 0
    storage = settings.studies_dir
    try:
        spec = parse_spec(study.spec)
    except SpecError as exc:  # deterministic: another attempt would fail the same way, so fail once, saying why
        store.mark(study.id, StudyStatus.failed, error=f"the study's spec does not validate: {exc}"[:ERROR_CHARS])
        log.error("study %s: %s", study.id, exc)
        return 2

    # Ray's job stop sends SIGTERM: leave the status the service set (cancelled) and exit.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        run_study(spec, study_id=study.id, storage_dir=storage, mlflow_uri=mlflow_uri,
                  optuna_storage=url, sink=RecordSink(store, study.id))
    except SystemExit:
        raise
    except Exception:  # noqa: BLE001 — already recorded by the sink
        log.exception("study %s failed", study.id)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
