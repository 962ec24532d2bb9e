"""The `actstudy` command: the studies layer's `run`, `train` and `activations`, plus the service's
`serve`, `submit`, `status`, `results`, `cancel` and `token` (API calls read $ACTSTUDY_URL, $ACTSTUDY_TOKEN)."""

from __future__ import annotations

import sys

import click

from service.client import ApiError, Client
from studies import cli as studies_cli
from studies.cli import cli

cli.errors = {**studies_cli.ActstudyGroup.errors, ApiError: 1}


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--data-dir", help="where the database, MLflow and Ray results live (default $ACTSTUDY_DATA_DIR or .actstudy)")
def serve(host: str, port: int, data_dir: str | None) -> int:
    """Start the API (and, on embedded defaults, Ray and MLflow)."""
    from service.serve import serve as run_server

    return run_server(host=host, port=port, data_dir=data_dir)


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("-q", "--quiet", is_flag=True, help="print only the id")
@click.option("--code", "code_folder", type=click.Path(file_okay=False, exists=True),
              help="a folder of your code, uploaded with the study: its driver and trials run in it (the service must allow user code)")
@click.option("--check", is_flag=True, help="only check it on the service (data, model, coverage): nothing is submitted")
def submit(spec: str, quiet: bool, code_folder: str | None, check: bool) -> int:
    """Submit a study to the API."""
    import yaml

    from service.code import CLIENT_MAX_BYTES, CodeError, pack_folder
    from studies.console import describe_model_report
    from studies.spec import SpecError, allow_user_code, load_spec, read_data_here

    # The fields are checked here, before a round trip; the data, the model and whether your code is taken are the
    # service's to check (they live on its cluster).
    read_data_here(False)
    allow_user_code(True, run_here=False)
    try:
        parsed = load_spec(spec)
        archive = pack_folder(code_folder, CLIENT_MAX_BYTES) if code_folder else None
    except (SpecError, FileNotFoundError, CodeError) as exc:
        click.echo(str(exc), err=True)
        return 2
    client = Client.from_env()
    body = parsed.model_dump(mode="json")
    if archive is not None:
        uploaded = client.upload_code(archive)
        body["code"] = uploaded["code"]
        if not quiet:
            click.echo(f"code: {code_folder} uploaded ({uploaded['files']} files, {uploaded['bytes']:,} bytes, sha256 {uploaded['code'][:12]})")
    if check:
        checked = client.validate(body)
        if checked.dataset:
            d = checked.dataset
            click.echo(f"dataset: samples {tuple(d['input_shape'])}, {d['num_classes']} classes, {d['train_samples']:,} training and "
                       f"{d['test_samples']:,} test samples, {d['bytes'] / 2**20:,.1f} MiB as float32"
                       + (", streamed batch by batch (above the memory cap)" if d.get("streamed") else ", held in memory"))
        click.echo(describe_model_report(checked.model_report) if checked.model_report else f"model: {parsed.model.name} ({parsed.model.source})")
        click.echo("valid: nothing submitted")
        return 0
    study = client.submit(body)
    if not quiet and study.model_report:
        click.echo(describe_model_report(study.model_report))
    click.echo(study.id if quiet else yaml.safe_dump(study.model_dump(mode="json", include={"id", "status", "links"}),
                                                   sort_keys=False))
    return 0


@cli.command()
@click.argument("study_id", metavar="ID")
@click.option("--wait", is_flag=True, help="follow it with a live display until it ends")
def status(study_id: str, wait: bool) -> int:
    """A study's status and progress."""
    from rich.console import Console

    from service.client import print_status

    client, console = Client.from_env(), Console()
    study = client.wait(study_id, console=console) if wait else client.study(study_id)
    print_status(console, study)
    return 0 if study.status in ("queued", "running", "succeeded") else 1


@cli.command()
@click.argument("study_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="the results as JSON")
def results(study_id: str, as_json: bool) -> int:
    """A finished study's ranking and statistics."""
    from rich.console import Console

    from studies.console import print_results

    found = Client.from_env().results(study_id)
    if as_json:
        click.echo(found.model_dump_json(indent=2))
    else:
        print_results(Console(), found)
    return 0


@cli.command()
@click.argument("study_id", metavar="ID")
def cancel(study_id: str) -> int:
    """Stop a queued or running study."""
    study = Client.from_env().cancel(study_id)
    click.echo(f"{study.id}: {study.status}")
    return 0


@cli.group(cls=studies_cli.ActstudyGroup)
def token() -> None:
    """API tokens."""


@token.command("create")
@click.option("--owner", required=True, help="the owner the token acts for")
def create_token(owner: str) -> int:
    """Mint a token for an owner (printed once; stored hashed)."""
    from service.auth import TokenStore
    from service.settings import Settings
    from studies.records import RecordStore, migrate

    settings = Settings()
    migrate(settings.db_url)
    click.echo(TokenStore(RecordStore(settings.db_url)).create(owner))
    return 0


def main(argv: list[str] | None = None) -> int:
    return studies_cli.main(argv, cli)


if __name__ == "__main__":
    sys.exit(main())
