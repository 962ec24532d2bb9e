"""Scaling: the same study on one worker node and on two, each node given one CPU; the throughput ratio.

Run it from the repository root (it starts its own MLflow server and, per configuration, its own Ray
cluster — a head with no CPUs and 1 or 2 worker nodes as separate `ray start` processes on loopback ports,
tests/utils/cluster.py — and stops them):

    .venv/bin/python bench/scaling.py                  # 4 activations × 4 trials × 6 epochs + 4 confirmations, ~8 min
    .venv/bin/python bench/scaling.py --quick          # 2 activations × 2 trials × 3 epochs: a smoke run, ~4 min
    .venv/bin/python bench/scaling.py --repeat 2       # 1, 2, 1, 2 nodes: the mean ratio, and its spread
    .venv/bin/python bench/scaling.py --json out.json  # the figures, machine-readable

What it does, for 1 worker node and then 2 (repeated --repeat times, alternating):

1. starts the cluster (not timed) and fills each node's dataset cache folder with MNIST-1D, generated once
   here, so the figure is about trials, not about each node's first generation (`--cold` leaves the
   caches empty: then each node generates it once, in its first trial);
2. runs the study with `actstudy run SPEC --ray-address HEAD` as a subprocess: relu, telu, silu, gelu;
   4 trials each; random sampler (the (lr, l2) of every trial are fixed by the seed, so both
   configurations run the same trials); no pruner (every trial runs every epoch); an MLP [512, 512] with
   batch 32, a few seconds a trial; one CPU per trial; one confirmation seed per activation;
3. reads the study's trial and confirmation runs back from MLflow and times the search + confirm phase
   from the first run's start to the last run's end (what `actstudy run` adds before it — Python start-up,
   connecting to Ray, opening the MLflow runs — is reported separately, as is the whole command's wall
   time); prints trials/minute for each configuration, the ratio two nodes / one node (target ≥ 1.7×),
   how many trials ran at once on average (sum of trial durations / span), the mean trial duration, and
   which nodes the trials ran on.

The ratio is printed split in two: trials at once (2 nodes / 1 node: how well the cluster keeps both
nodes busy) divided by the per-trial slowdown (how much slower each trial runs when two run at once).
Expect the first ≈ 1.7× (what keeps it under 2×: the gap between one trial ending and the next starting on
a node, the search → confirm hand-over, the confirmation's 4 trials on 2 slots). The second is ≈ 1 only
where every worker node has a core of its own plus one for the driver, Ray's own processes and MLflow.
On the 2-core development VM it is ≈ 1.6× (two trials share the two cores with all of those, and with other
agents' processes), and the ratio measured there was 1.03× (bench/README.md). The load average is printed
next to each run.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Every Ray process and client started from here is an authenticated client of the clusters started here.
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
os.environ["RAY_AUTH_MODE"] = "token"

import yaml  # noqa: E402

TARGET = 1.7  # trials/minute on two nodes / on one node


def make_spec(activations: list[str], trials: int, epochs: int, seed: int) -> dict:
    return {
        "name": "bench-scaling",
        "dataset": {"name": "mnist1d"},
        "model": {"name": "mlp", "hidden": [512, 512]},
        "activations": activations,
        "search": {"trials_per_activation": trials, "sampler": "random", "pruner": "none",
                   "lr": {"low": 1e-3, "high": 3e-2, "log": True}, "l2": {"low": 1e-6, "high": 1e-3, "log": True}},
        "training": {"epochs": epochs, "batch_size": 32, "optimizer": "adam"},
        "confirm": {"seeds": 1},
        "resources": {"cpus_per_trial": 1, "gpus_per_trial": 0},
        "seed": seed,
    }


def run_once(nodes: int, spec_path: Path, work: Path, mlflow_url: str, warm_cache: Path | None, tag: str) -> dict:
    from mlflow.tracking import MlflowClient

    from tests.utils.cluster import MultiNodeCluster

    study_id = f"n{nodes}-{tag}"
    t0 = time.perf_counter()
    cluster = MultiNodeCluster.start(work / f"cluster-{study_id}", os.environ["RAY_AUTH_TOKEN"], workers=nodes, cpus_per_worker=1)
    startup_s = time.perf_counter() - t0
    try:
        node_ids = cluster.worker_node_ids()
        if warm_cache is not None:
            for worker in cluster.workers:
                for f in warm_cache.glob("mnist1d-*.npz"):
                    shutil.copy2(f, worker.cache_dir / f.name)
        log = work / f"{study_id}.log"
        cmd = [sys.executable, "-m", "service.cli", "run", str(spec_path), "--ray-address", cluster.head.address,
               "--mlflow-uri", mlflow_url, "--study-id", study_id, "--data-dir", str(work / "data")]
        load = os.getloadavg()[0]
        started = time.time()
        with log.open("wb") as out:
            proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "COLUMNS": "120"}, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=3600)
        ended = time.time()
        if proc.returncode != 0:
            raise RuntimeError(f"the study on {nodes} node(s) failed ({proc.returncode}); log {log}:\n{log.read_text()[-3000:]}")
    finally:
        cluster.stop()

    client = MlflowClient(mlflow_url)
    exp = client.get_experiment_by_name(f"bench-scaling-{study_id}")
    runs = client.search_runs([exp.experiment_id], "tags.`actstudy.kind` != ''", max_results=5000)
    finished = [r for r in runs if r.info.status == "FINISHED"]
    assert len(finished) == len(runs), [(r.info.status, r.data.tags.get("actstudy.trial_id")) for r in runs]
    first = min(r.info.start_time for r in runs) / 1000
    last = max(r.info.end_time for r in runs) / 1000
    span = last - first
    durations = [(r.info.end_time - r.info.start_time) / 1000 for r in runs]
    by_node = Counter(r.data.tags.get("actstudy.node_id") for r in runs)
    return {
        "nodes": nodes,
        "runs": len(runs),
        "trials": sum(r.data.tags.get("actstudy.kind") == "trial" for r in runs),
        "confirmations": sum(r.data.tags.get("actstudy.kind") == "confirm" for r in runs),
        "span_s": span,
        "trials_per_min": len(runs) / span * 60,
        "command_wall_s": ended - started,
        "before_first_trial_s": first - started,
        "after_last_trial_s": ended - last,
        "mean_trial_s": statistics.mean(durations),
        "concurrency": sum(durations) / span,
        "runs_per_node": [by_node.get(node_ids[w], 0) for w in sorted(node_ids)],
        "cluster_startup_s": startup_s,
        "load_before": load,
        "load_after": os.getloadavg()[0],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 activations × 2 trials × 3 epochs")
    parser.add_argument("--repeat", type=int, default=1, help="run 1 node, 2 nodes this many times, alternating")
    parser.add_argument("--epochs", type=int, help="epochs per trial (default 6; 3 with --quick)")
    parser.add_argument("--cold", action="store_true", help="leave the nodes' dataset caches empty")
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, Tune state, MLflow)")
    args = parser.parse_args()

    activations = ["relu", "telu"] if args.quick else ["relu", "telu", "silu", "gelu"]
    trials = 2 if args.quick else 4
    epochs = args.epochs or (3 if args.quick else 6)
    work = Path(tempfile.mkdtemp(prefix="actstudy-scaling-"))
    spec_path = work / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(make_spec(activations, trials, epochs, seed=0)))

    from studies.local import free_port, start_mlflow
    from workers.data import load_dataset

    warm = None
    if not args.cold:
        warm = work / "warm-cache"
        load_dataset("mnist1d", cache_dir=warm)  # generated once here, copied to each node's cache folder
    print(f"study: {len(activations)} activations × {trials} trials × {epochs} epochs + {len(activations)} confirmations; "
          f"MLP [512, 512], batch 32, 1 CPU per trial; work folder {work}", flush=True)
    mlflow = start_mlflow(work, port=free_port())
    results: list[dict] = []
    try:
        for i in range(args.repeat):
            for nodes in (1, 2):
                print(f"-- {nodes} worker node(s), round {i + 1}/{args.repeat} ...", flush=True)
                r = run_once(nodes, spec_path, work, mlflow.url, warm, tag=str(i))
                results.append(r)
                print(f"   {r['runs']} runs in {r['span_s']:.1f} s: {r['trials_per_min']:.1f} trials/min "
                      f"(mean trial {r['mean_trial_s']:.1f} s, {r['concurrency']:.2f} at once, runs per node {r['runs_per_node']}; "
                      f"command {r['command_wall_s']:.1f} s, of which {r['before_first_trial_s']:.1f} s before the first trial; "
                      f"load {r['load_before']:.1f} → {r['load_after']:.1f})", flush=True)
    finally:
        mlflow.stop()

    one = [r["trials_per_min"] for r in results if r["nodes"] == 1]
    two = [r["trials_per_min"] for r in results if r["nodes"] == 2]
    ratios = [b / a for a, b in zip(one, two, strict=False)]
    ratio = statistics.mean(ratios)
    wall_ratio = statistics.mean(a["command_wall_s"] / b["command_wall_s"]
                                 for a, b in zip(results[0::2], results[1::2], strict=False))
    print()
    print(f"{'nodes':>5} {'trials/min':>11} {'span s':>8} {'mean trial s':>13} {'at once':>8} {'command s':>10}")
    for nodes in (1, 2):
        rs = [r for r in results if r["nodes"] == nodes]
        print(f"{nodes:>5} {statistics.mean(r['trials_per_min'] for r in rs):>11.1f} {statistics.mean(r['span_s'] for r in rs):>8.1f} "
              f"{statistics.mean(r['mean_trial_s'] for r in rs):>13.2f} {statistics.mean(r['concurrency'] for r in rs):>8.2f} "
              f"{statistics.mean(r['command_wall_s'] for r in rs):>10.1f}")
    spread = f" (rounds: {', '.join(f'{x:.2f}' for x in ratios)})" if len(ratios) > 1 else ""
    verdict = "meets" if ratio >= TARGET else "below"
    print(f"\nthroughput ratio, 2 nodes / 1 node: {ratio:.2f}×{spread} — {verdict} the {TARGET}× target; "
          f"whole `actstudy run` wall-time ratio {wall_ratio:.2f}×")
    # throughput ratio = (trials at once, 2 / 1) × (mean trial time, 1 / 2): how well the cluster keeps two
    # nodes busy, times how much each trial slows down when two run at once on this machine's cores.
    mean = lambda key, n: statistics.mean(r[key] for r in results if r["nodes"] == n)  # noqa: E731
    concurrency_ratio = mean("concurrency", 2) / mean("concurrency", 1)
    slowdown = mean("mean_trial_s", 2) / mean("mean_trial_s", 1)
    print(f"  = trials at once {concurrency_ratio:.2f}× (the ratio had each trial run as fast as alone) "
          f"/ per-trial slowdown {slowdown:.2f}× (two trials at once, plus the driver, Ray and MLflow, on these cores)")
    print(f"cores on this machine: {os.cpu_count()}, load average now {os.getloadavg()[0]:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"ratio": ratio, "ratios": ratios, "wall_ratio": wall_ratio, "target": TARGET,
                                               "concurrency_ratio": concurrency_ratio, "trial_slowdown": slowdown,
                                               "cpu_count": os.cpu_count(), "runs": results}, indent=2))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"kept {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
