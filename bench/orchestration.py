"""What the study runner's orchestration costs: the same MNIST-1D MLP trials as a plain loop and through Ray Tune.

Run it from the repository root (it starts its own local Ray and its own MLflow server, and stops both):

    .venv/bin/python bench/orchestration.py                    # 4 activations × 12 trials × 40 epochs
    .venv/bin/python bench/orchestration.py --quick            # 2 × 3 trials × 10 epochs: a smoke run, a few minutes
    .venv/bin/python bench/orchestration.py --no-reuse-actors  # also the search with a new Ray actor per trial
    .venv/bin/python bench/orchestration.py --json out.json    # the figures, machine-readable
    .venv/bin/python bench/orchestration.py --no-parallel --plain-once   # skip the baselines' repeats

What it does, on the same cores, one after the other:

1. builds a StudySpec (relu, telu, silu, gelu; 12 trials each; random sampler, so the (lr, l2) of every
   trial is fixed by the seed; no pruner, so every trial runs every epoch; 1 CPU per trial) and draws the
   configurations up front with the study's own searcher (`PerActivationSearcher`; Optuna's RandomSampler
   does not depend on earlier results, so these are the configurations the runner will run);
2. the plain loop: `workers.train.train(TrialConfig(...))` for each configuration, one after the other, in
   this process, torch on one thread — no Ray, no Optuna, no MLflow;
3. the study runner: starts an MLflow server (`studies.local.start_mlflow`) and a local Ray
   (`studies.execution.ensure_ray`), opens the study's MLflow runs (`StudyRuns.open`), then runs the search
   phase exactly as `actstudy run` does (`studies.search.run_search`: one Tune experiment, as many
   concurrent trials as the CPUs fit, every epoch logged to MLflow, a checkpoint every 5 epochs). The
   confirmation phase is not run. Afterwards it checks that Tune ran the same configurations and that
   MLflow holds one finished run with every epoch for each trial;
4. the plain loop again (the machine may be shared: the figure used is the mean of the two loops), and
   before the runner the same trials split over as many plain processes as the runner runs trials at
   once (spawned, no Ray, Optuna or MLflow): what two cores give with no orchestration at all;
5. prints the wall times and the ratio runner / plain loop for the search phase alone, and the search phase
   against the plain processes of step 4 (the target: ≤1.05, what these cores allow plus 5 %)
   and with the start-up of MLflow, Ray and the study's runs; then where the runner's time went, from the
   trials' MLflow runs: how many trials ran at once on average, the wait for the first trial (actor
   start-up), training time inside the trials against the plain loop's (CPU contention), the time per
   epoch spent outside training (MLflow logging, Tune's synchronous per-epoch report, checkpoints), the
   gap between trials, and the CPU seconds used by the driver, the MLflow server and Ray's processes.

Tune saves its experiment state on its own default schedule (a study's truth is in Optuna and MLflow, so
the runner no longer makes Tune save after every event). The driver's calls to Tune's save are timed (the
only instrumentation; behaviour is unchanged). CPU seconds come from /proc (a sampler thread in the driver, every 0.5 s).

Expect ~1.5 s per trial in the plain loop on a quiet core, and 10–20 minutes in all on a loaded machine.
Other processes' load moves every wall time (the two plain loops of one run differed 2× on the shared
development VM), so the load average is printed next to each, and the CPU-bound ratio (all the runner's
CPU seconds over the cores, against the plain loop's CPU seconds) is printed as a load-independent
bound. bench/README.md holds the figures and what they say.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import optuna  # noqa: E402

from studies.search import METRIC, PerActivationSearcher  # noqa: E402
from studies.spec import StudySpec, parse_spec  # noqa: E402
from workers.config import TrialConfig  # noqa: E402
from workers.train import train  # noqa: E402

TARGET = 1.05  # search phase wall / the same trials in as many plain processes as the runner runs at once
BOOKKEEPING_TARGET = 0.10  # CPU s of the driver and the MLflow server / CPU s of the trial processes
CLK = os.sysconf("SC_CLK_TCK")


def make_spec(activations: list[str], trials: int, epochs: int, seed: int) -> StudySpec:
    return parse_spec({
        "name": "bench-orchestration",
        "dataset": {"name": "mnist1d"},
        "model": {"name": "mlp", "hidden": [100, 100]},
        "activations": activations,
        "search": {"trials_per_activation": trials, "sampler": "random", "pruner": "none",
                   "lr": {"low": 1e-3, "high": 3e-2, "log": True}, "l2": {"low": 1e-6, "high": 1e-3, "log": True},
                   "concurrency_per_activation": 1},
        "training": {"epochs": epochs, "batch_size": 100, "optimizer": "adam"},
        "confirm": {"seeds": 1},
        "resources": {"cpus_per_trial": 1, "gpus_per_trial": 0},
        "seed": seed,
    })


def planned_trials(spec: StudySpec) -> list[dict]:
    """Every search trial's configuration, in the order the runner starts them (one at a time per activation)."""
    searcher = PerActivationSearcher(spec, "plan", optuna.storages.InMemoryStorage())
    out = []
    for i in range(spec.total_trials()):
        trial_id = f"plan_{i}"
        out.append(searcher.suggest(trial_id))
        searcher.on_trial_complete(trial_id, {METRIC: 0.0, "epoch": spec.training.epochs})
    return out


def trial_config(spec: StudySpec, trial: dict) -> TrialConfig:
    return spec.trial_config(**{k: trial[k] for k in ("activation", "activation_params", "lr", "l2")}, threads=1, device="cpu")


def key(label: str, lr: float, l2: float) -> tuple:
    return (label, round(lr, 12), round(l2, 12))


def plain_loop(spec: StudySpec, trials: list[dict]) -> dict:
    per_trial, train_s = [], 0.0
    load = os.getloadavg()[0]
    cpu0, start = time.process_time(), time.perf_counter()
    for trial in trials:
        t0 = time.perf_counter()
        result = train(trial_config(spec, trial))
        per_trial.append(time.perf_counter() - t0)
        train_s += sum(r["epoch_time"] for r in result.history)
    wall = time.perf_counter() - start
    return {"wall_s": wall, "cpu_s": time.process_time() - cpu0, "per_trial_s": per_trial,
            "epoch_time_sum_s": train_s, "load_before": load}


def parallel_loops(spec: StudySpec, trials: list[dict], processes: int) -> dict:
    """The plain loop split over `processes` fresh processes (trial i to process i mod n): orchestration at its cheapest."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    load = os.getloadavg()[0]
    start = time.perf_counter()
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        parts = list(pool.map(plain_loop, [spec] * processes, [trials[i::processes] for i in range(processes)]))
    return {"processes": processes, "wall_s": time.perf_counter() - start, "longest_loop_s": max(p["wall_s"] for p in parts),
            "cpu_s": sum(p["cpu_s"] for p in parts), "load_before": load}


# --- CPU seconds of process trees, from /proc ---

def _procs() -> dict[int, tuple[int, float, str]]:
    """pid → (parent pid, CPU seconds of itself and the children it reaped, command line)."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        out[int(entry)] = (int(fields[1]), sum(int(x) for x in fields[11:15]) / CLK, cmd)
    return out


class CpuSampler:
    """CPU seconds used during a phase by this driver (all its threads), the MLflow server's processes and Ray's
    processes (trial workers included). Ray's processes are sampled every half second, so a worker that ends
    counts up to its last sample."""

    def __init__(self, mlflow_pid: int) -> None:
        import threading

        self.mlflow_pid, self.me = mlflow_pid, os.getpid()
        self.first: dict[int, float] = {}
        self.last: dict[int, tuple[str, str, float]] = {}  # pid → (group, process name, CPU s)
        self.driver0 = sum(os.times()[:2])
        self._sample()
        self.first = {pid: cpu for pid, (_, _, cpu) in self.last.items()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        procs = _procs()
        children: dict[int, list[int]] = {}
        for pid, (ppid, _, _) in procs.items():
            children.setdefault(ppid, []).append(pid)

        def tree(root: int) -> list[int]:
            out, todo = [], [root]
            while todo:
                pid = todo.pop()
                out.append(pid)
                todo += children.get(pid, [])
            return out

        mlflow = set(tree(self.mlflow_pid))
        for pid in tree(self.me):
            if pid != self.me and pid in procs:
                name = procs[pid][2].split(" ")[0]
                name = name if name.startswith("ray::") else Path(name).name + " " + next(
                    (Path(a).name for a in procs[pid][2].split(" ")[1:] if a.endswith(".py") or a.startswith("-m")), "")
                name = self.last[pid][1] if pid in self.last and not name.strip() else name.strip()  # a zombie has no cmdline
                self.last[pid] = ("mlflow_server" if pid in mlflow else "ray", name, procs[pid][1])

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self._sample()

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        self._sample()
        out = {"driver": sum(os.times()[:2]) - self.driver0, "mlflow_server": 0.0, "ray": 0.0}
        by_name: dict[str, float] = {}
        for pid, (group, name, cpu) in self.last.items():
            out[group] += cpu - self.first.get(pid, 0.0)
            if group == "ray":
                by_name[name] = by_name.get(name, 0.0) + cpu - self.first.get(pid, 0.0)
        self.ray_by_name = dict(sorted(by_name.items(), key=lambda kv: -kv[1]))
        return out


def trial_cpu_s(by_name: dict[str, float]) -> float:
    """CPU s of Ray's worker processes (the trials: `ray::ImplicitFunc…`, or `ray::IDLE` once a worker is
    between trials), without Ray's own agents and services."""
    return sum(v for k, v in by_name.items() if k.startswith("ray::") and not any(a in k for a in ("Agent", "Dashboard", "Stats")))


class _time_calls:
    """Count and time the calls of cls.name until undo() (a measurement; behaviour is unchanged)."""

    def __init__(self, cls, name: str) -> None:
        self.cls, self.name, self.original = cls, name, getattr(cls, name)
        self.calls, self.seconds = 0, 0.0
        original, timer = self.original, self

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                timer.calls += 1
                timer.seconds += time.perf_counter() - t0

        setattr(cls, name, timed)

    def undo(self) -> None:
        setattr(self.cls, self.name, self.original)


def study_runner(spec: StudySpec, workdir: Path, *, reuse_actors: bool = True) -> dict:
    """Start MLflow and Ray, open the study's runs, run the search phase; times of each step."""
    import ray
    from ray.tune.execution.tune_controller import TuneController

    from studies.execution import StudyContext, StudyPaths, ensure_ray
    from studies.local import start_mlflow
    from studies.mlflow import StudyRuns
    from studies.search import open_storage, run_search

    out: dict = {"load_before": os.getloadavg()[0]}
    t0 = time.perf_counter()
    mlflow = start_mlflow(workdir)
    out["mlflow_start_s"] = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        ensure_ray("local")  # a Ray of our own, never another session's
        out["ray_start_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        study_id = "bench"
        runs = StudyRuns.open(mlflow.url, spec, study_id)
        paths = StudyPaths(workdir.resolve() / "studies" / study_id)
        paths.root.mkdir(parents=True, exist_ok=True)
        ctx = StudyContext(spec, study_id, paths, runs, mlflow.url)
        searcher = PerActivationSearcher(spec, study_id, open_storage(paths.optuna))
        out["open_runs_s"] = time.perf_counter() - t0
        saves = _time_calls(TuneController, "checkpoint")  # Tune saving its experiment state, in the driver
        try:
            cpu = CpuSampler(mlflow.process.pid)
            out["search_started"] = time.time()
            t0 = time.perf_counter()
            trials = run_search(ctx, searcher, reuse_actors=reuse_actors)
            out["search_s"] = time.perf_counter() - t0
            out["search_ended"] = time.time()
            out["cpu_s"] = cpu.stop()
            out["ray_cpu_by_process"] = cpu.ray_by_name
        finally:
            saves.undo()
        out["state_saves"] = {"calls": saves.calls, "seconds": saves.seconds}
        out["trials"] = trials
        out["runs"] = trial_runs(runs, spec)
        return out
    finally:
        ray.shutdown()
        mlflow.stop()


def trial_runs(runs, spec: StudySpec) -> list[dict]:
    """Every search trial's MLflow run: status, start and end (s), epochs logged and the training time in them."""
    client = runs.client
    found = client.search_runs([runs.experiment_id], "tags.`actstudy.kind` = 'trial'", max_results=10_000)
    out = []
    for r in found:
        history = client.get_metric_history(r.info.run_id, "epoch_time")
        out.append({"status": r.info.status, "outcome": r.data.tags.get("actstudy.status"),
                    "start": r.info.start_time / 1000, "end": (r.info.end_time or 0) / 1000,
                    "epochs": len(history), "epoch_time_sum_s": sum(m.value for m in history)})
    return out


def check(planned: list[dict], r: dict, spec: StudySpec) -> None:
    want = sorted(key(t["label"], t["lr"], t["l2"]) for t in planned)
    got = sorted(key(label, t["lr"], t["l2"]) for label, ts in r["trials"].items() for t in ts)
    if want != got:
        raise SystemExit(f"the study runner ran other configurations than the plain loop:\n{want}\n{got}")
    bad = [(label, t["status"]) for label, ts in r["trials"].items() for t in ts if t["status"] != "completed"]
    if bad:
        raise SystemExit(f"not every trial completed in the study runner: {bad}")
    logged = [x for x in r["runs"] if x["status"] == "FINISHED" and x["outcome"] == "completed" and x["epochs"] == spec.training.epochs]
    if len(r["runs"]) != len(planned) or len(logged) != len(planned):
        raise SystemExit(f"MLflow holds {len(r['runs'])} trial runs, {len(logged)} finished with every epoch; expected {len(planned)}")


def breakdown(spec: StudySpec, plain_train_s: float, r: dict) -> dict:
    """Where the search phase's wall time went, from the trials' MLflow runs."""
    runs = sorted(r["runs"], key=lambda x: x["start"])
    n, epochs = len(runs), spec.training.epochs
    lives = [x["end"] - x["start"] for x in runs]
    train_s = sum(x["epoch_time_sum_s"] for x in runs)
    first, last = runs[0]["start"], max(x["end"] for x in runs)
    # Gaps: for each trial after the first two, the time from the end of the trial it replaced (the
    # earliest-ending running one) to its own start — a slot's idle time between two trials.
    ends, gaps = [], []
    for x in runs:
        if len(ends) >= 2:
            ends.sort()
            gaps.append(x["start"] - ends.pop(0))
        ends.append(x["end"])
    return {
        "trials": n,
        "concurrency": sum(lives) / (last - first),
        "first_trial_wait_s": first - r["search_started"],
        "after_last_trial_s": r["search_ended"] - last,
        "trial_life_median_s": statistics.median(lives),
        "train_s": train_s,
        "train_vs_plain": train_s / plain_train_s,
        "outside_training_per_epoch_s": (sum(lives) - train_s) / (n * epochs),
        "gap_between_trials_median_s": statistics.median(gaps) if gaps else None,
    }


def report(spec: StudySpec, plains: list[dict], runs: list[tuple[str, dict]], parallel: dict | None) -> tuple[list[str], dict]:
    n = spec.total_trials()
    plain_wall = statistics.mean(p["wall_s"] for p in plains)
    plain_train = statistics.mean(p["epoch_time_sum_s"] for p in plains)
    plain_cpu = statistics.mean(p["cpu_s"] for p in plains)
    lines = [f"{n} trials ({len(spec.labels)} activations × {spec.search.trials_per_activation}), {spec.training.epochs} epochs each, "
             f"MNIST-1D MLP {spec.model.hidden}, batch {spec.training.batch_size}; {os.cpu_count()} CPUs; "
             f"TUNE_GLOBAL_CHECKPOINT_S={os.environ.get('TUNE_GLOBAL_CHECKPOINT_S', 'auto')}", ""]
    w = 58
    lines.append(f"{'':<{w}}{'wall s':>8}{'× plain':>9}")
    for i, p in enumerate(plains):
        label = f"plain loop #{i + 1} (load average before {p['load_before']:.1f})"
        lines.append(f"{label:<{w}}{p['wall_s']:>8.1f}{p['wall_s'] / plain_wall:>9.2f}   median {statistics.median(p['per_trial_s']):.2f} s per trial")
    lines.append(f"{'plain loop, mean (1 process, no Ray/Optuna/MLflow)':<{w}}{plain_wall:>8.1f}{1:>9.2f}")
    if parallel is not None:
        label = f"plain loops, {parallel['processes']} processes at once (load avg before {parallel['load_before']:.1f})"
        lines.append(f"{label:<{w}}{parallel['wall_s']:>8.1f}{parallel['wall_s'] / plain_wall:>9.2f}"
                     f"   longest loop {parallel['longest_loop_s']:.1f} s ({parallel['longest_loop_s'] / plain_wall:.2f}×), CPU {parallel['cpu_s']:.0f} s")
    figures = {"plain_wall_s": plain_wall, "plain_train_s": plain_train, "plain_cpu_s": plain_cpu, "parallel": parallel,
               "tune_global_checkpoint_s": os.environ.get("TUNE_GLOBAL_CHECKPOINT_S", "auto"), "runner": {}}
    for name, r in runs:
        b = breakdown(spec, plain_train, r)
        start = r["mlflow_start_s"] + r["ray_start_s"] + r["open_runs_s"]
        ratio = r["search_s"] / plain_wall
        vs_parallel = r["search_s"] / parallel["wall_s"] if parallel else None
        trials_cpu = trial_cpu_s(r["ray_cpu_by_process"])
        bookkeeping = (r["cpu_s"]["driver"] + r["cpu_s"]["mlflow_server"]) / trials_cpu if trials_cpu else None
        figures["runner"][name] = {"search_s": r["search_s"], "ratio": ratio, "vs_parallel": vs_parallel,
                                   "trials_cpu_s": trials_cpu, "bookkeeping_cpu_ratio": bookkeeping, "startup_s": start,
                                   "ratio_with_startup": (r["search_s"] + start) / plain_wall, **b,
                                   "cpu_s": r["cpu_s"], "load_before": r["load_before"], "state_saves": r["state_saves"],
                                   "ray_cpu_by_process": r["ray_cpu_by_process"],
                                   **{k: r[k] for k in ("mlflow_start_s", "ray_start_s", "open_runs_s")}}
        label = f"study runner, {name}: search phase"
        lines.append(f"{label:<{w}}{r['search_s']:>8.1f}{ratio:>9.2f}   (load average before {r['load_before']:.1f})")
        if vs_parallel is not None:
            label = f"  search phase / {parallel['processes']} plain processes at once"
            lines.append(f"{label:<{w}}{vs_parallel:>8.2f}   target ≤{TARGET}: {'met' if vs_parallel <= TARGET else 'NOT met'}")
        label = f"  + start-up: MLflow {r['mlflow_start_s']:.1f}, Ray {r['ray_start_s']:.1f}, study runs {r['open_runs_s']:.1f}"
        lines.append(f"{label:<{w}}{r['search_s'] + start:>8.1f}{(r['search_s'] + start) / plain_wall:>9.2f}")
        rows = [
            ("  trials running at once, on average", f"{b['concurrency']:.2f}"),
            ("  wait for the first trial (actor start-up)", f"{b['first_trial_wait_s']:.1f} s"),
            ("  after the last trial ended", f"{b['after_last_trial_s']:.1f} s"),
            ("  trial run in MLflow, start → end, median", f"{b['trial_life_median_s']:.2f} s"),
            ("  training in the trials (sum of epoch_time)", f"{b['train_s']:.1f} s = {b['train_vs_plain']:.2f}× the plain loop's"),
            ("  per epoch outside training (MLflow, Tune report, ckpt)", f"{1000 * b['outside_training_per_epoch_s']:.0f} ms"),
            ("  slot idle between two trials, median", "-" if b["gap_between_trials_median_s"] is None else f"{b['gap_between_trials_median_s']:.2f} s"),
            ("  Tune saving its experiment state (driver): calls, time", f"{r['state_saves']['calls']}, {r['state_saves']['seconds']:.1f} s"),
            ("  CPU s of Ray's processes, the largest", ", ".join(f"{k} {v:.0f}" for k, v in list(r["ray_cpu_by_process"].items())[:4])),
            ("  CPU s: driver / MLflow server / Ray with the trials / all",
             " / ".join(f"{r['cpu_s'][k]:.0f}" for k in ("driver", "mlflow_server", "ray")) + f" / {sum(r['cpu_s'].values()):.0f}"
             + f"  (plain loop: {plain_cpu:.0f})"),
        ]
        lines += [f"{a:<{w}}{b_:>8}" if len(b_) <= 8 else f"{a:<{w}}  {b_}" for a, b_ in rows]
        # Independent of other processes' load, as long as the CPU times are: the runner needs at least its
        # CPU seconds spread over every core, the plain loop its CPU seconds on one.
        cpu_bound = sum(r["cpu_s"].values()) / (os.cpu_count() or 1) / plain_cpu
        figures["runner"][name]["cpu_bound_ratio"] = cpu_bound
        label = f"  CPU-bound ratio: all CPU s / {os.cpu_count()} cores / plain loop CPU s"
        lines.append(f"{label:<{w}}{cpu_bound:>8.2f}")
        if bookkeeping is not None:
            label = "  CPU s of driver + MLflow server / trial processes'"
            lines.append(f"{label:<{w}}{bookkeeping:>8.2f}   target ≤{BOOKKEEPING_TARGET}: "
                         f"{'met' if bookkeeping <= BOOKKEEPING_TARGET else 'NOT met'} (trials {trials_cpu:.0f} CPU s)")
        lines.append(f"{'  MLflow: trial runs finished, every epoch logged':<{w}}{len(r['runs']):>8d}")
    return lines, figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--activations", nargs="+", default=["relu", "telu", "silu", "gelu"])
    parser.add_argument("--trials", type=int, default=12, help="per activation")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="2 activations × 3 trials × 10 epochs")
    parser.add_argument("--no-reuse-actors", action="store_true", help="also run the search with reuse_actors=False")
    parser.add_argument("--no-parallel", action="store_true", help="skip the plain loop split over parallel processes")
    parser.add_argument("--plain-once", action="store_true", help="run the plain loop only before the runner, not also after")
    parser.add_argument("--keep", metavar="DIR", help="keep MLflow's and Tune's files here (default: a temporary folder)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    args = parser.parse_args(argv)
    if args.quick:
        args.activations, args.trials, args.epochs = args.activations[:2], 3, 10
    logging.basicConfig(level=logging.WARNING)
    # The figures come from MLflow; Tune's complaints about trial folders without result files are noise here.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)

    spec = make_spec(args.activations, args.trials, args.epochs, args.seed)
    planned = planned_trials(spec)
    plains = []
    print(f"plain loop: {len(planned)} trials ...", flush=True)
    plains.append(plain_loop(spec, planned))
    print(f"  {plains[-1]['wall_s']:.1f} s", flush=True)

    parallel = None
    if not args.no_parallel:
        processes = max(1, int((os.cpu_count() or 1) // spec.resources.cpus_per_trial))
        print(f"the same trials in {processes} plain processes at once ...", flush=True)
        parallel = parallel_loops(spec, planned, processes)
        print(f"  {parallel['wall_s']:.1f} s", flush=True)

    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="actstudy-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        variants = [("reuse_actors=True", True)] + ([("reuse_actors=False", False)] if args.no_reuse_actors else [])
        for name, reuse in variants:
            print(f"study runner ({name}) ...", flush=True)
            r = study_runner(spec, workdir / name.replace("=", "-"), reuse_actors=reuse)
            check(planned, r, spec)
            print(f"  search phase {r['search_s']:.1f} s", flush=True)
            results.append((name, r))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if not args.plain_once:
        print("plain loop again ...", flush=True)
        plains.append(plain_loop(spec, planned))
        print(f"  {plains[-1]['wall_s']:.1f} s", flush=True)

    lines, figures = report(spec, plains, results, parallel)
    print()
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "trials": spec.total_trials(), "epochs": spec.training.epochs, "cpus": os.cpu_count(),
            "plain": plains, **figures}, indent=2))
    met = figures["runner"]["reuse_actors=True"]["vs_parallel"]
    return 0 if met is None or met <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
