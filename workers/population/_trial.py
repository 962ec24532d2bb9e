"""The body of a population's Tune trial (`run_population`): `train_population` with one recorder per member, a
report to Tune after every epoch that carries each member's state, and successive halving at the rungs.

Tune sees one trial; the searcher and the MLflow run ends on the driver read the members from its reports
(`members`: trial key → {epoch, val_acc, status, mlflow_run_id, rungs}): a member that is pruned, diverges or completes
is told and ended at the report where that happened, its recorder having sent everything before that report. A population is not checkpointed:
an attempt that is lost (a worker or the driver died) trains its members again from the start, each member's new MLflow
run pointing back to the lost one as a single trial's retry does.
"""

from __future__ import annotations

import logging
import math

from ray import tune

from workers.config import TrialConfig
from workers.population._halving import SuccessiveHalving
from workers.population._members import Unbatchable
from workers.population._train import train_population
from workers.train import TrialResult, train
from workers.trial import TrialRecorder

log = logging.getLogger(__name__)


def run_population(cfgs: list[TrialConfig], keys: list[str], recorders: list[TrialRecorder] | None = None, *,
                   prune: SuccessiveHalving | None = None, report=None) -> list[TrialResult]:
    """Train the members `cfgs` (one model and activation, differing in lr and l2) as one population, reporting
    after each epoch through `report` (default `tune.report`); `keys` name the members in the reports."""
    shared = {k: v for k, v in cfgs[0].to_dict().items() if k not in ("lr", "l2")}
    for key, cfg in zip(keys, cfgs, strict=True):
        other = {k: v for k, v in cfg.to_dict().items() if k not in ("lr", "l2")}
        if other != shared:
            differing = sorted(k for k in shared if shared[k] != other.get(k))
            raise ValueError(f"population member {key} differs from the first in {differing}: members differ in lr and l2 only")
    recorders = recorders or [TrialRecorder() for _ in cfgs]
    report = report or tune.report
    for cfg, recorder in zip(cfgs, recorders, strict=True):
        recorder.start(cfg, None, None)
    state = {key: {"epoch": 0, "val_acc": None, "status": "running", "rungs": {}} for key in keys}

    def on_epoch(epoch: int, records: dict[int, dict]) -> list[int]:
        stop = list(prune(epoch, records)) if prune else []
        for i, record in records.items():
            member = state[keys[i]]
            recorders[i].epoch(record)
            value = record["val_acc"]
            member.update(epoch=epoch, val_acc=value if math.isfinite(value) else None, **recorders[i].metrics())
            if prune is not None and epoch in prune.milestones:
                member["rungs"][str(epoch)] = value
            if record["diverged"]:
                member["status"] = "diverged"
                recorders[i].end(TrialResult("diverged", epoch, [], diverged_at=epoch))
            elif i in stop and epoch < cfgs[i].epochs:
                member["status"] = "pruned"
                recorders[i].stopped()
            elif epoch == cfgs[i].epochs:
                member["status"] = "completed"
                recorders[i].end(TrialResult("completed", epoch, []))  # everything it logged, sent before the report
        alive = [r["val_acc"] for i, r in records.items() if not r["diverged"] and math.isfinite(r["val_acc"])]
        report({"epoch": epoch, "val_acc": max(alive, default=float("nan")), "diverged": False,
                "members": {k: dict(v, rungs=dict(v["rungs"])) for k, v in state.items()}})
        return stop

    try:
        try:
            results = train_population(cfgs[0], [(c.lr, c.l2) for c in cfgs], on_epoch=on_epoch)
        except Unbatchable as why:
            log.warning("this model does not train as a population (%s): its %d members train one after another", why, len(cfgs))
            results = _one_by_one(cfgs, on_epoch, prune)
    except BaseException as exc:
        for key, recorder in zip(keys, recorders, strict=True):
            if state[key]["status"] != "running":
                continue
            if isinstance(exc, SystemExit):  # Tune stopped the trial (the experiment ends)
                recorder.stopped()
            else:
                recorder.failed(exc)
        raise
    return results


class _Pruned(Exception):
    """Raised from a member's epoch hook to stop its training (pruned at a rung)."""


def _one_by_one(cfgs: list[TrialConfig], on_epoch, prune: SuccessiveHalving | None) -> list[TrialResult]:
    """The members trained as single trials, one after another, reporting as the population would; each is judged at
    the rungs against the activation's history and the members before it."""
    results = []
    for i, cfg in enumerate(cfgs):
        history: list[dict] = []

        def hook(record: dict, state, i=i, history=history) -> None:
            history.append(record)
            if on_epoch(record["epoch"], {i: record}):
                raise _Pruned

        try:
            results.append(train(cfg, on_epoch=hook))
        except _Pruned:
            results.append(TrialResult("pruned", len(history), history))
        if prune is not None:
            for record in history:
                if record["epoch"] in prune.milestones and not record["diverged"]:
                    prune.history.setdefault(record["epoch"], []).append(record["val_acc"])
    return results
