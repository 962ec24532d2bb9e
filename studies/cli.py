"""`actstudy` commands that need no service: `run`, `train`, `activations` (click).

The service layer (`service.cli`) adds `serve`, `submit`, `status`, `results`, `cancel` and `token` to
the same group. `train`'s flags are derived from `workers.config.TrialConfig`, one per option, with its
type, choices, limits and description: an option added there is a flag here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from studies.cli_options import model_options
from studies.spec import describe
from workers import TrialConfig

# `actstudy train` prints test accuracy, so it scores the test split unless told not to.
TRAIN_DEFAULTS = {"evaluate_test": True}


class ActstudyGroup(click.Group):
    """Bad input (a ValueError) ends a command with its message and exit status 2, without a traceback;
    `errors` maps other exception types to their exit status (the service adds its API errors)."""

    errors: dict[type[BaseException], int] = {ValueError: 2}

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except tuple(self.errors) as exc:
            code = next(c for t, c in self.errors.items() if isinstance(exc, t))
            click.echo(f"actstudy {ctx.invoked_subcommand}: {_message(exc)}", err=True)
            ctx.exit(code)


def _message(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):  # name each field and the reason, not pydantic's whole report
        return "; ".join(describe(exc.errors(include_url=False)))
    return str(exc)


@click.group(cls=ActstudyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
def cli() -> None:
    """Compare activation functions, each tuned fairly."""


# --- commands --------------------------------------------------------------------------------------


@cli.command()
@click.option("--plot", metavar="FILE", help="also draw every activation and its derivative to a PNG (with --check: the formula's)")
@click.option("--check", "expr", metavar="EXPR", help="check a formula as a study would (e.g. \"x * tanh(softplus(x))\"), start nothing")
@click.option("--params", metavar="YAML", help="the formula's parameters, e.g. '{beta: {init: 1.0, learnable: true}}'")
@click.option("--json", "as_json", is_flag=True, help="with --check: print the check as JSON (the REST answer)")
def activations(plot: str | None, expr: str | None, params: str | None, as_json: bool) -> int:
    """List every activation with its formula and parameters; or check a formula of your own (exit 1: refused)."""
    from rich.console import Console
    from rich.table import Table

    import activations as registry

    console = Console()
    if expr is not None:
        return _check_formula(console, expr, params, plot, as_json)
    if params is not None or as_json:
        raise ValueError("--params and --json go with --check EXPR")
    table = Table(title="actstudy activations")
    for col in ("name", "formula", "parameters", "source"):
        table.add_column(col)
    for name in [*registry.names(), registry.FORMULA]:
        e = registry.entry(name)
        params_text = ", ".join(f"{k}={v}" for k, v in registry.parameters(name).items()) or "-"
        table.add_row(name + (" *" if e.learnable else ""), e.formula, params_text, e.source)
    console.print(table)
    console.print("* learnable. formula: " + ", ".join(registry.FORMULA_FUNCTIONS) + "; try one with --check EXPR")
    if plot:
        from studies.report import plot_activations

        console.print(f"wrote {plot_activations(plot)}")
    return 0


def _check_formula(console, expr: str, params: str | None, plot: str | None, as_json: bool) -> int:
    import yaml

    from studies.spec import FormulaRequest, check_formula_request

    values = yaml.safe_load(params) if params else None  # data only: safe_load builds no objects
    check = check_formula_request(FormulaRequest.model_validate({"expr": expr, "params": values}, strict=False))
    if as_json:
        click.echo(check.model_dump_json())
    else:
        console.print(f"[bold]{check.label}[/]: {check.expr}" + (f"  (learnable: {', '.join(check.learnable)})" if check.learnable else ""))
        console.print("[green]passes[/]: a study may use it" if check.ok else f"[red]refused[/]: {check.message}")
        console.print(f"checked: {check.checked}", style="dim")
    if plot:
        from studies.report import plot_formula_check

        path = plot_formula_check(check, plot)
        if not as_json:
            console.print(f"wrote {path}")
    return 0 if check.ok else 1


def _warn_if_unchecked(cfg: TrialConfig, console) -> None:
    """One training may try a formula a study would refuse (to see what happens): it is said, not refused."""
    import activations as registry

    if cfg.activation != registry.FORMULA:
        return
    report = registry.check_formula(registry.create(registry.FORMULA, num_features=1, **cfg.activation_params))
    if not report.ok:
        console.print(f"[yellow]warning[/]: a study would refuse this formula: {report.message()}")


def train_config(options: dict[str, Any]) -> TrialConfig:
    """`train`'s options as a TrialConfig: what was given, else TRAIN_DEFAULTS, else TrialConfig's defaults."""
    return TrialConfig(**{**TRAIN_DEFAULTS, **{k: v for k, v in options.items() if v is not None}})


@cli.command()
@model_options(TrialConfig, TRAIN_DEFAULTS)
@click.option("--json", "as_json", is_flag=True, help="print one JSON object on the last line")
def train(as_json: bool, **options: Any) -> int:
    """Train one model with one activation and print its metrics."""
    import time

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from workers.train import train as train_model

    cfg = train_config(options)
    console = Console(stderr=True)
    _warn_if_unchecked(cfg, console)
    start = time.perf_counter()
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[status]}"), console=console, disable=as_json and not console.is_terminal) as bar:
        task = bar.add_task(f"{cfg.model}/{cfg.activation} on {cfg.dataset}", total=cfg.epochs, status="")

        def on_epoch(record, state):
            scores = " ".join(f"{k.removesuffix('_acc')} {record[k]:.3f}" for k in ("val_acc", "test_acc") if k in record)
            bar.update(task, completed=record["epoch"], status=f"loss {record['train_loss']:.3f} {scores}")

        result = train_model(cfg, on_epoch=on_epoch)
    final = result.final
    summary = {"status": result.status, "epochs": result.epochs_run, "test_acc": final.get("test_acc"),
               "val_acc": final.get("val_acc"), "train_loss": final.get("train_loss"),
               "wall_s": round(time.perf_counter() - start, 2), "config": cfg.to_dict()}
    if result.diverged_at:
        summary["diverged_at"] = result.diverged_at
    if as_json:
        click.echo(json.dumps(summary))
    else:
        test = "" if summary["test_acc"] is None else f"test_acc {summary['test_acc']:.4f}  "
        console.print(f"{result.status}: {test}val_acc {summary['val_acc']:.4f}  ({summary['epochs']} epochs, {summary['wall_s']} s)")
    return 0 if result.status == "completed" else 3


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--ray-address", help="existing cluster (default $RAY_ADDRESS, else a local Ray)")
@click.option("--mlflow-uri", help="tracking server (default $MLFLOW_TRACKING_URI, else a local mlflow server)")
@click.option("--resume", is_flag=True, help="continue an interrupted study (finished trials are kept)")
@click.option("--study-id", help="the study's id (default: from the spec's name and contents)")
@click.option("--data-dir", default=".actstudy", show_default=True, help="where studies, Ray results and the local MLflow live")
@click.option("--code", "code_folder", type=click.Path(file_okay=False, exists=True),
              help="a folder of your code (`source: import` models from it): Ray gives it to every trial")
def run(spec: str, ray_address: str | None, mlflow_uri: str | None, resume: bool, study_id: str | None, data_dir: str,
        code_folder: str | None) -> int:
    """Run a study in-process on a local or given Ray cluster."""
    from rich.console import Console

    from studies.console import RichProgress, describe_model_report, print_results
    from studies.local import start_mlflow
    from studies.runner import run_study, study_id_for
    from studies.settings import DriverSettings
    from studies.spec import SpecError, allow_user_code, load_spec

    console = Console()
    allow_user_code(True)  # your own machine: an activation may be your class (`package.module:Class`)
    if code_folder:
        sys.path.insert(0, str(Path(code_folder).resolve()))
    try:
        study_spec = load_spec(spec)
        report = study_spec.model_report()
    except (SpecError, FileNotFoundError) as exc:
        console.print(f"[red]{exc}[/red]")
        return 2
    if report:
        console.print(describe_model_report(report))
    data = Path(data_dir)
    study_id = study_id or study_id_for(study_spec, data / "studies", resume=resume)
    mlflow_uri = mlflow_uri or DriverSettings().mlflow_uri
    mlflow = None
    if not mlflow_uri:
        console.print("starting a local mlflow server ...")
        mlflow = start_mlflow(data)
        mlflow_uri = mlflow.url
    try:
        results = run_study(study_spec, study_id=study_id, storage_dir=data / "studies", mlflow_uri=mlflow_uri,
                            ray_address=ray_address, sink=RichProgress(console), code_folder=code_folder)
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted; continue with: actstudy run {spec} --resume --study-id {study_id}[/yellow]")
        return 130
    except Exception as exc:  # noqa: BLE001 — the study failed; say why and exit non-zero
        console.print(f"[red]study {study_id} failed: {type(exc).__name__}: {exc}[/red]")
        return 1
    finally:
        if mlflow is not None:
            mlflow.stop()
    print_results(console, results)
    if mlflow is not None:
        console.print(f"browse it later: mlflow ui --backend-store-uri sqlite:///{(data / 'mlflow' / 'mlflow.db').resolve()} "
                      f"--artifacts-destination {(data / 'mlflow' / 'artifacts').resolve()}")
    return 0


def main(argv: list[str] | None = None, group: click.Group = cli) -> int:
    """Run `group` on `argv` and return the exit status (usage errors: 2, with click's message)."""
    try:
        status = group.main(args=argv, prog_name="actstudy", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        return 130
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    sys.exit(main())
