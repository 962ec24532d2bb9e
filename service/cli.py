"""The `actstudy` command. The top layer assembles it, since `serve` and `submit` need the service;
each subcommand calls into the layer that owns the work."""

from __future__ import annotations

import argparse
import sys


def _cmd_activations(args: argparse.Namespace) -> int:
    import activations
    from rich.console import Console
    from rich.table import Table

    table = Table(title="actstudy activations")
    for col in ("name", "formula", "parameters", "source"):
        table.add_column(col)
    for name in activations.names():
        e = activations.entry(name)
        params = ", ".join(f"{k}={v}" for k, v in activations.parameters(name).items()) or "-"
        table.add_row(name + (" *" if e.learnable else ""), e.formula, params, e.source)
    console = Console()
    console.print(table)
    console.print("* learnable")
    if args.plot:
        from studies.plots import plot_activations

        path = plot_activations(args.plot)
        console.print(f"wrote {path}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    import json
    import time

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from workers.train import TrialConfig, train

    params = json.loads(args.activation_params) if args.activation_params else {}
    cfg = TrialConfig(
        dataset=args.dataset, model=args.model, activation=args.activation, activation_params=params,
        lr=args.lr, l2=args.l2, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
        optimizer=args.optimizer, schedule=args.schedule, evaluate_test=True, data_root=args.data_root,
        device=args.device, threads=args.threads, hidden=tuple(args.hidden),
    )
    console = Console(stderr=True)
    start = time.perf_counter()
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[status]}"), console=console, disable=args.json and not console.is_terminal) as bar:
        task = bar.add_task(f"{cfg.model}/{cfg.activation} on {cfg.dataset}", total=cfg.epochs, status="")

        def on_epoch(record, state):
            bar.update(task, completed=record["epoch"],
                       status=f"loss {record['train_loss']:.3f} val {record['val_acc']:.3f} test {record['test_acc']:.3f}")

        result = train(cfg, on_epoch=on_epoch)
    final = {k: v for k, v in result.final.items() if k != "activations"}
    summary = {"status": result.status, "epochs": result.epochs_run, "test_acc": final.get("test_acc"),
               "val_acc": final.get("val_acc"), "train_loss": final.get("train_loss"),
               "wall_s": round(time.perf_counter() - start, 2), "config": cfg.to_dict()}
    if result.diverged_at:
        summary["diverged_at"] = result.diverged_at
    if args.json:
        print(json.dumps(summary))
    else:
        console.print(f"{result.status}: test_acc {summary['test_acc']:.4f}  val_acc {summary['val_acc']:.4f}  "
                      f"({summary['epochs']} epochs, {summary['wall_s']} s)")
    return 0 if result.status == "completed" else 3


def _cmd_run(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from rich.console import Console

    from studies.console import RichProgress, ranking_table
    from studies.local_services import start_mlflow
    from studies.runner import run_study, study_id_for
    from studies.spec import SpecError, load_spec

    console = Console()
    try:
        spec = load_spec(args.spec)
    except (SpecError, FileNotFoundError) as exc:
        console.print(f"[red]{exc}[/red]")
        return 2
    data_dir = Path(args.data_dir)
    study_id = args.study_id or study_id_for(spec, data_dir / "studies", resume=args.resume)
    mlflow_uri = args.mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI")
    mlflow = None
    if not mlflow_uri:
        console.print("starting a local mlflow server ...")
        mlflow = start_mlflow(data_dir)
        mlflow_uri = mlflow.url
    try:
        results = run_study(spec, study_id=study_id, storage_dir=data_dir / "studies", mlflow_uri=mlflow_uri,
                            ray_address=args.ray_address, sink=RichProgress(console))
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted; continue with: actstudy run {args.spec} --resume --study-id {study_id}[/yellow]")
        return 130
    except Exception as exc:  # noqa: BLE001 — the study failed; say why and exit non-zero
        console.print(f"[red]study {study_id} failed: {type(exc).__name__}: {exc}[/red]")
        return 1
    finally:
        if mlflow is not None:
            mlflow.stop()
    console.print(ranking_table(results))
    console.print(f"best activation: [bold]{results['best_activation']}[/bold]")
    console.print(f"MLflow parent run: {results['mlflow']['parent_run_url'] or results['mlflow']['parent_run_id']}")
    if mlflow is not None:
        console.print(f"browse it later: mlflow ui --backend-store-uri sqlite:///{(data_dir / 'mlflow' / 'mlflow.db').resolve()} "
                      f"--artifacts-destination {(data_dir / 'mlflow' / 'artifacts').resolve()}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from service.serve import serve

    return serve(host=args.host, port=args.port, data_dir=args.data_dir)


def _client(args: argparse.Namespace):
    from service.client import Client

    return Client.from_env()


def _cmd_submit(args: argparse.Namespace) -> int:
    import yaml

    from studies.spec import SpecError, load_spec

    try:
        spec = load_spec(args.spec)  # fail here, with the field named, before a round trip
    except (SpecError, FileNotFoundError) as exc:
        print(exc, file=sys.stderr)
        return 2
    study = _client(args).submit(spec.model_dump(mode="json"))
    print(study["id"] if args.quiet else yaml.safe_dump({k: study[k] for k in ("id", "status", "links")}, sort_keys=False))
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from rich.console import Console

    from service.client import print_status

    client = _client(args)
    console = Console()
    study = client.wait(args.id, console=console) if args.wait else client.study(args.id)
    print_status(console, study)
    return 0 if study["status"] in ("queued", "running", "succeeded") else 1


def _cmd_results(args: argparse.Namespace) -> int:
    import json

    from rich.console import Console

    from studies.console import ranking_table

    results = _client(args).results(args.id)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    console = Console()
    seeds = next(iter(results["activations"].values()))["test_acc"]["n"] if results["activations"] else 0
    console.print(ranking_table({**results, "name": results["id"], "seeds": [0] * seeds}))
    console.print(f"best activation: [bold]{results['best_activation']}[/bold]")
    mlflow = results.get("mlflow") or {}
    if mlflow.get("parent_run_url"):
        console.print(f"MLflow: {mlflow['parent_run_url']}")
    return 0


def _cmd_cancel(args: argparse.Namespace) -> int:
    study = _client(args).cancel(args.id)
    print(f"{study['id']}: {study['status']}")
    return 0


def _cmd_token(args: argparse.Namespace) -> int:
    from service.settings import Settings
    from studies.records import RecordStore, migrate

    settings = Settings()
    migrate(settings.db_url)
    print(RecordStore(settings.db_url).create_token(args.owner))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="actstudy", description="Compare activation functions, each tuned fairly.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("activations", help="list every activation with its formula and parameters")
    p.add_argument("--plot", metavar="FILE", help="also draw every activation and its derivative to a PNG")
    p.set_defaults(func=_cmd_activations)

    p = sub.add_parser("train", help="train one model with one activation and print its metrics")
    p.add_argument("--dataset", default="mnist1d")
    p.add_argument("--model", default="mlp")
    p.add_argument("--activation", default="relu")
    p.add_argument("--activation-params", help='JSON, e.g. \'{"segments": 8}\'')
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--l2", type=float, default=0.0)
    p.add_argument("--epochs", type=int, default=167, help="default ≈ 6,000 steps on MNIST-1D, as its paper")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--optimizer", default="adam", choices=["adam", "adamw", "sgd"])
    p.add_argument("--schedule", default="constant", choices=["constant", "cosine"])
    p.add_argument("--hidden", type=int, nargs="+", default=[100, 100], help="mlp hidden sizes")
    p.add_argument("--data-root", help="folder of torchvision datasets (default $ACTSTUDY_DATA_ROOT)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("run", help="run a study in-process on a local or given Ray cluster")
    p.add_argument("spec", help="study spec, YAML or JSON")
    p.add_argument("--ray-address", help="existing cluster (default $RAY_ADDRESS, else a local Ray)")
    p.add_argument("--mlflow-uri", help="tracking server (default $MLFLOW_TRACKING_URI, else a local mlflow server)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted study (finished trials are kept)")
    p.add_argument("--study-id", help="the study's id (default: from the spec's name and contents)")
    p.add_argument("--data-dir", default=".actstudy", help="where studies, Ray results and the local MLflow live")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("serve", help="start the API (and, on embedded defaults, Ray and MLflow)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--data-dir", help="where the database, MLflow and Ray results live (default $ACTSTUDY_DATA_DIR or .actstudy)")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("submit", help="submit a study to the API ($ACTSTUDY_URL, $ACTSTUDY_TOKEN)")
    p.add_argument("spec")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the id")
    p.set_defaults(func=_cmd_submit)
    p = sub.add_parser("status", help="a study's status and progress")
    p.add_argument("id")
    p.add_argument("--wait", action="store_true", help="follow it with a live display until it ends")
    p.set_defaults(func=_cmd_status)
    p = sub.add_parser("results", help="a finished study's ranking and statistics")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_results)
    p = sub.add_parser("cancel", help="stop a queued or running study")
    p.add_argument("id")
    p.set_defaults(func=_cmd_cancel)

    p = sub.add_parser("token", help="API tokens")
    tsub = p.add_subparsers(dest="token_command", required=True)
    t = tsub.add_parser("create", help="mint a token for an owner (printed once; stored hashed)")
    t.add_argument("--owner", required=True)
    t.set_defaults(func=_cmd_token)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from service.client import ApiError

    try:
        return args.func(args)
    except ApiError as exc:
        print(f"actstudy {args.command}: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # bad input: say what, no traceback
        print(f"actstudy {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
