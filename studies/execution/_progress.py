"""A running study's progress: trials done / running / total and the best score so far, per activation.

One shape for both phases (`phase_progress`), built from what the stores already hold when a phase
starts (earlier drivers' trials) plus what this driver's Tune experiment has run.
"""

from __future__ import annotations

import math
import time

from ray import tune

from studies.spec import ActivationProgress, Phase, PhaseProgress, StudyResults, StudySpec
from studies.trial_run import MEMBER_ENDS, flatten, members_of


class ProgressSink:
    """Where a running study reports. Call order: started → update × n → finished | failed. All no-ops."""

    def started(self, spec: StudySpec, study_id: str, parent_url: str | None) -> None: ...

    def update(self, progress: PhaseProgress) -> None: ...

    def finished(self, results: StudyResults) -> None: ...

    def failed(self, reason: str) -> None: ...


SINKS: dict[str, ProgressSink] = {}  # by study id: callbacks are pickled with the Tune experiment; sinks are not


def phase_progress(phase: Phase, totals: dict[str, int], done: dict[str, int], running: dict[str, int],
                   best: dict[str, float | None]) -> PhaseProgress:
    return PhaseProgress(phase=phase, activations={
        label: ActivationProgress(done=done.get(label, 0), running=running.get(label, 0), total=total, best=best.get(label))
        for label, total in totals.items()})


def emit(study_id: str, progress: PhaseProgress) -> None:
    sink = SINKS.get(study_id)
    if sink is not None:
        sink.update(progress)


def _better(a: float | None, b: float | None) -> float | None:
    return b if a is None or (b is not None and b > a) else a


class ProgressCallback(tune.Callback):
    """Counts this experiment's trials per activation on top of what earlier drivers finished."""

    def __init__(self, study_id: str, phase: Phase, totals: dict[str, int], done: dict[str, int],
                 best: dict[str, float | None], every_s: float = 1.0) -> None:
        self.study_id, self.phase, self.totals, self.every_s = study_id, phase, totals, every_s
        self.prior_done, self.prior_best = done, best
        self.metric = "test_acc" if phase == "confirm" else "val_acc"
        self._last = 0.0
        self._ended: set[str] = set()  # Tune calls on_trial_complete before it sets the trial's status

    def progress(self, trials) -> PhaseProgress:
        done, best, running = dict(self.prior_done), dict(self.prior_best), {}
        for t in trials:
            label = flatten(t.config).get("label")
            if label not in self.totals:
                continue
            r = t.last_result or {}
            size = len(t.config.get("members", ())) or 1  # a population counts as its members
            reported = members_of(r)
            # ended, and (a retry's report) those an earlier attempt ended, which train no more
            ended = sum(1 for m in reported.values() if m.get("status") in MEMBER_ENDS) + (size - len(reported) if reported else 0)
            if t.is_finished() or t.trial_id in self._ended:
                done[label] = done.get(label, 0) + size
            elif t.status == "RUNNING":
                done[label] = done.get(label, 0) + ended
                running[label] = running.get(label, 0) + size - ended
            if self.metric in r and not r.get("diverged") and math.isfinite(r[self.metric]):
                best[label] = _better(best.get(label), float(r[self.metric]))
        return phase_progress(self.phase, self.totals, done, running, best)

    def _emit(self, trials, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= self.every_s:
            self._last = now
            emit(self.study_id, self.progress(trials))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._emit(trials)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._ended.add(trial.trial_id)
        self._emit(trials, force=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._ended.add(trial.trial_id)
        self._emit(trials, force=True)

    def __getstate__(self):
        return {**self.__dict__, "_ended": set()}
