"""What asking trials in populations costs the search: best validation accuracy against trials spent, for population
sizes P, over several study seeds — the study's own searcher (`PerActivationSearcher`, TPE seeded per trial, the
constant liar for populations) and its own training (`workers.train.train` for P = 1, `train_population` for P > 1),
in this process, without Ray or MLflow.

    .venv/bin/python -m bench.search_quality                                  # relu and pwlu, 16 trials × 10 epochs, P = 1 4 8 16, seeds 0–4
    .venv/bin/python -m bench.search_quality --activations relu --seeds 0 1 --trials 8 --sizes 1 4   # a smoke run

No pruner, so every trial runs every epoch and only the asking differs: with P = 1 each trial is asked after all
earlier ones were told (sequential TPE); with P = 16 and 16 trials all are asked at once (random search, in effect).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from ray.tune.search import Searcher

from studies.search import PerActivationSearcher, open_storage
from studies.spec import parse_spec
from workers.data import load_dataset
from workers.population import train_population
from workers.train import train


def search(label: str, population: int, seed: int, trials: int, epochs: int, data, folder: Path) -> list[float]:
    """Each trial's final validation accuracy, in the order of trial numbers."""
    spec = parse_spec({"activations": [label], "seed": seed, "training": {"epochs": epochs},
                       "search": {"trials_per_activation": trials, "sampler": "tpe", "pruner": "none", "population": population}})
    searcher = PerActivationSearcher(spec, f"q-{label}-{population}-{seed}", open_storage(folder / f"{label}-{population}-{seed}.log"))
    act = spec.activation(label)
    values: dict[int, float] = {}
    n = 0
    while (config := searcher.suggest(f"t{n}")) not in (None, Searcher.FINISHED):
        members = config.get("members") or [config]
        cfg = spec.trial_config(activation=act.name, activation_params=act.params, lr=members[0]["lr"], l2=members[0]["l2"])
        if population == 1:
            results = [train(cfg, dataset=data)]
        else:
            results = train_population(cfg, [(m["lr"], m["l2"]) for m in members], dataset=data)
        report = {}
        for m, r in zip(members, results, strict=True):
            val = r.final.get("val_acc", float("nan")) if r.status == "completed" else float("nan")
            values[m["optuna_trial"]] = val
            report[m["trial_key"]] = {"epoch": r.epochs_run, "val_acc": val, "status": r.status}
        if population == 1:
            searcher.on_trial_complete(f"t{n}", {"val_acc": values[members[0]["optuna_trial"]], "epoch": results[0].epochs_run,
                                                 "diverged": results[0].status == "diverged"})
        else:
            searcher.on_trial_complete(f"t{n}", {"members": report})
        n += 1
    return [values[k] for k in sorted(values)]


def best_after(values: list[float], n: int) -> float:
    return max((v for v in values[:n] if v == v), default=0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--activations", nargs="+", default=["relu", "pwlu"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[1, 4, 8, 16])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    checkpoints = sorted({args.trials // 4, args.trials // 2, args.trials} - {0})
    print(f"best validation accuracy after n trials (TPE, no pruner, {args.epochs} epochs, MNIST-1D MLP), "
          f"mean ± sd over seeds {args.seeds}")
    print("| activation | P | " + " | ".join(f"after {n}" for n in checkpoints) + " |")
    print("|---|---:|" + "---:|" * len(checkpoints))
    with tempfile.TemporaryDirectory() as tmp:
        for label in args.activations:
            for p in args.sizes:
                runs = []
                for seed in args.seeds:
                    data = load_dataset("mnist1d", seed=seed)
                    runs.append(search(label, p, seed, args.trials, args.epochs, data, Path(tmp)))
                cells = []
                for n in checkpoints:
                    bests = [best_after(r, n) for r in runs]
                    sd = statistics.stdev(bests) if len(bests) > 1 else 0.0
                    cells.append(f"{statistics.mean(bests):.4f} ± {sd:.4f}")
                print(f"| {label} | {p} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
