"""A whole study's time to answer beside its compute floor, measured in one run, for each population size P.

    .venv/bin/python -m bench.study_floor                          # 6 activations × 20 trials × 30 epochs, ASHA, 5 seeds; P = 1 and 5
    .venv/bin/python -m bench.study_floor --population 1 4 10 20   # (≈ 3–5 min per P on 2 cores)
    .venv/bin/python -m bench.study_floor --quick                  # 2 × 6 trials × 6 epochs: a smoke run

For each P: the study runs as `actstudy run` does (`studies.runner.run_study`: a local Ray on this machine's CPUs, a
local MLflow server, Optuna in a journal; search with ASHA, then confirmation) and its wall time is taken. Then its
compute floor: every run the study trained (search trials or population members, confirmation seeds), each for the
epochs it really ran (from its MLflow run), trained by `workers.train.train` one at a time in as many plain processes
as the machine has cores — no Ray, Optuna or MLflow. The ratio study / floor is the study's cost over the bare
trainings it did (issue "Population trials": ≤ 1.0 at the chosen default P). A population trains its members
together, so its study can be *under* its floor.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import shutil
import tempfile
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from studies.execution import ensure_ray
from studies.local import start_mlflow
from studies.mlflow import layout
from studies.runner import run_study
from studies.spec import parse_spec

ACTIVATIONS = ["relu", "gelu", "silu", "mish", "telu", "pwlu"]


def spec_for(population: int, quick: bool) -> dict:
    trials, epochs, seeds = (6, 6, 2) if quick else (20, 30, 5)
    return {"name": "floor", "activations": ACTIVATIONS[:2] if quick else ACTIVATIONS, "seed": 0,
            "search": {"trials_per_activation": trials, "sampler": "tpe", "pruner": "asha", "population": population},
            "training": {"epochs": epochs}, "confirm": {"seeds": seeds}}


def runs_trained(uri: str, experiment: str, spec) -> list[dict]:
    """Each trial and confirmation run of the study: its training options and the epochs it ran (from MLflow)."""
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    out = []
    for kind in ("trial", "confirm"):
        for run in client.search_runs([exp.experiment_id], layout.kind_filter(kind), max_results=10_000):
            if run.data.tags.get(layout.RETRIED_AS):
                continue  # an interrupted attempt: its retry is counted
            act = spec.activation(run.data.tags[layout.ACTIVATION])
            p = run.data.params
            cfg = spec.trial_config(activation=act.name, activation_params=act.params, lr=float(p["lr"]), l2=float(p["l2"]),
                                    seed=int(p["seed"]), evaluate_test=kind == "confirm")
            out.append({"config": cfg.to_dict(), "epochs": len(client.get_metric_history(run.info.run_id, "val_acc"))})
    return out


_data = {}


def _train_one(job: dict) -> float:
    from workers import TrialConfig
    from workers.data import load_dataset
    from workers.train import train

    cfg = TrialConfig.model_validate({**job["config"], "epochs": job["epochs"]})
    if cfg.seed not in _data:
        _data[cfg.seed] = load_dataset(cfg.dataset, seed=cfg.seed, val_fraction=cfg.val_fraction)
    t = time.perf_counter()
    train(cfg, dataset=_data[cfg.seed])
    return time.perf_counter() - t


def floor(jobs: list[dict], processes: int) -> float:
    """Wall seconds to train `jobs` one at a time in `processes` plain processes (longest first, as a pool takes them)."""
    jobs = sorted(jobs, key=lambda j: -j["epochs"])
    with mp.get_context("spawn").Pool(processes) as pool:
        pool.map(_train_one, [dict(j, epochs=1) for j in jobs[:processes]])  # start-up and data outside the timing
        t = time.perf_counter()
        pool.map(_train_one, [j for j in jobs if j["epochs"] > 0], chunksize=1)
        return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--population", nargs="+", type=int, default=[1, 5])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cores = os.cpu_count() or 1
    workdir = Path(tempfile.mkdtemp(prefix="actstudy-floor-"))
    mlflow = start_mlflow(workdir)
    rows = []
    try:
        ensure_ray(None)
        for p in args.population:
            spec = parse_spec(spec_for(p, args.quick))
            study_id = f"p{p}"
            t = time.perf_counter()
            results = run_study(spec, study_id=study_id, storage_dir=workdir / "studies", mlflow_uri=mlflow.url)
            study = time.perf_counter() - t
            jobs = runs_trained(mlflow.url, layout.experiment_name(spec.name, study_id), spec)
            bare = floor(jobs, cores)
            epochs = sum(j["epochs"] for j in jobs)
            rows.append({"population": p, "study_s": study, "floor_s": bare, "ratio": study / bare, "runs": len(jobs),
                         "epochs": epochs, "best": results.best_activation,
                         "best_val": {a: r.best_val_acc for a, r in results.activations.items()}})
            print(f"P = {p:2d}: study {study:6.1f} s, floor {bare:6.1f} s ({len(jobs)} runs, {epochs} epochs, {cores} processes): "
                  f"study / floor = {study / bare:.2f}", flush=True)
    finally:
        import ray

        ray.shutdown()
        mlflow.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print("| P | study (s) | floor (s) | runs | epochs run | study / floor |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['population']} | {r['study_s']:.1f} | {r['floor_s']:.1f} | {r['runs']} | {r['epochs']} | {r['ratio']:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
