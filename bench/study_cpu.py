"""What a whole study costs in bookkeeping: CPU seconds of the driver and the MLflow server against the trials'.

Run it from the repository root (it starts its own local Ray and MLflow server, and stops both):

    .venv/bin/python bench/study_cpu.py examples/mnist1d-full.yaml      # 17 activations: ~10-15 min on 2 cores
    .venv/bin/python bench/study_cpu.py examples/mnist1d-quick.yaml     # a minute or two

It runs the spec as `actstudy run` does (`studies.runner.run_study` in this process, which is the driver),
samples the CPU seconds of this process, of the MLflow server's processes and of Ray's processes from
/proc every half second (bench/orchestration.py's `CpuSampler`), and prints them with the study's wall
time and the ratio (driver + MLflow server) / trial processes. The target: ≤ 0.10.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestration import BOOKKEEPING_TARGET, CpuSampler, trial_cpu_s  # noqa: E402

from studies.execution import ensure_ray  # noqa: E402
from studies.local import start_mlflow  # noqa: E402
from studies.runner import run_study  # noqa: E402
from studies.spec import load_spec  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("spec")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    spec = load_spec(args.spec)
    workdir = Path(tempfile.mkdtemp(prefix="actstudy-cpu-"))
    mlflow = start_mlflow(workdir)
    try:
        ensure_ray("local")  # a Ray of our own, never another session's
        cpu = CpuSampler(mlflow.process.pid)
        start = time.perf_counter()
        results = run_study(spec, study_id="cpu", storage_dir=workdir / "studies", mlflow_uri=mlflow.url)
        wall = time.perf_counter() - start
        used = cpu.stop()
    finally:
        import ray

        ray.shutdown()
        mlflow.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    trials = trial_cpu_s(cpu.ray_by_name)
    bookkeeping = used["driver"] + used["mlflow_server"]
    ratio = bookkeeping / trials
    n = len(spec.labels) * (spec.search.trials_per_activation + spec.confirm.seeds)
    print(f"{args.spec}: {len(spec.labels)} activations, {n} trials and confirmation runs, best {results.best_activation}")
    print(f"wall time                                {wall:8.1f} s")
    print(f"CPU s: driver                            {used['driver']:8.1f}")
    print(f"CPU s: MLflow server                     {used['mlflow_server']:8.1f}")
    print(f"CPU s: trial processes                   {trials:8.1f}")
    print(f"CPU s: Ray's own processes               {used['ray'] - trials:8.1f}")
    print(f"(driver + MLflow server) / trials        {ratio:8.3f}   target ≤{BOOKKEEPING_TARGET}: "
          f"{'met' if ratio <= BOOKKEEPING_TARGET else 'NOT met'}")
    print("Ray processes, the largest: " + ", ".join(f"{k} {v:.0f}" for k, v in list(cpu.ray_by_name.items())[:6]))
    if args.json:
        Path(args.json).write_text(json.dumps({"spec": args.spec, "wall_s": wall, "cpu_s": used, "trials_cpu_s": trials,
                                               "ratio": ratio, "ray_by_name": cpu.ray_by_name}, indent=2))
    return 0 if ratio <= BOOKKEEPING_TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
