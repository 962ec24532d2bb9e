"""`make demo`: start the stack on embedded defaults, submit examples/mnist1d-quick.yaml over REST, follow it
to the end, print the ranking and where to browse it, and leave the stack up for browsing.

    python -m service.demo [--data-dir .actstudy] [--port 8000] [--spec SPEC] [--stop-after]
    python -m service.demo --stop [--data-dir .actstudy]     (`make stop`: stops the stack and waits for it)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
from rich.console import Console

from service.client import Client
from service.stack import StackLocked, owner_lock, stop_recorded
from studies.console import print_results
from studies.local import free_port, wait_http
from studies.spec import load_spec

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mnist1d-quick.yaml"
READY_TIMEOUT_S = 300  # Ray, MLflow and the API on a cold machine


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def start_stack(data_dir: Path, port: int, console: Console) -> tuple[str, int, bool]:
    """The API URL, the serve process id, and whether this call started it."""
    pid_file, url_file = data_dir / "serve.pid", data_dir / "serve.url"
    if pid_file.exists() and url_file.exists() and _alive(int(pid_file.read_text())):
        url = url_file.read_text().strip()
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                console.print(f"using the stack already running at {url} (pid {pid_file.read_text().strip()})")
                return url, int(pid_file.read_text()), False
        except httpx.HTTPError:
            pass
    port = free_port(port)
    log = data_dir / "serve.log"
    console.print(f"starting the stack: actstudy serve --port {port} --data-dir {data_dir}  (log: {log})")
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--port", str(port), "--data-dir", str(data_dir)],
                            stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    pid_file.write_text(str(proc.pid))
    url_file.write_text(url)
    with console.status("waiting for Ray, MLflow and the API to be ready ..."):
        try:
            wait_http(f"{url}/readyz", proc, log, READY_TIMEOUT_S, "actstudy serve")  # /readyz: 503 until all answer
        except (RuntimeError, TimeoutError) as exc:
            raise SystemExit(str(exc)) from None
    return url, proc.pid, True


def stop_stack(data_dir: Path, console: Console, timeout: float = 90) -> int:
    """SIGTERM the `actstudy serve` the demo started and wait until it has stopped what it started; a stack whose
    serve was killed is stopped from what it recorded (`service.stack`)."""
    pid_file = data_dir / "serve.pid"
    pid = int(pid_file.read_text()) if pid_file.exists() else None
    if pid is None or not _alive(pid):
        pid_file.unlink(missing_ok=True)
        if not data_dir.is_dir():
            console.print("no stack running")
            return 0
        try:
            with owner_lock(data_dir):  # no serve holds it: what is recorded is an orphan
                stopped = stop_recorded(data_dir, console.print)
        except StackLocked as exc:
            console.print(f"[red]{exc}[/red]")
            return 1
        console.print("stack stopped (its serve had died)" if stopped else "no stack running")
        return 0
    console.print(f"stopping the stack (pid {pid}) ...")
    os.kill(pid, signal.SIGTERM)
    with contextlib.suppress(psutil.NoSuchProcess, psutil.TimeoutExpired):
        psutil.Process(pid).wait(timeout)
    if _alive(pid):
        console.print(f"[red]the stack (pid {pid}) did not stop within {timeout:.0f} s; see {data_dir / 'serve.log'}[/red]")
        return 1
    pid_file.unlink(missing_ok=True)
    console.print("stack stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.demo")
    parser.add_argument("--data-dir", default=".actstudy")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--spec", default=str(EXAMPLE))
    parser.add_argument("--stop-after", action="store_true", help="stop the stack when the study ends")
    parser.add_argument("--stop", action="store_true", help="only stop the stack a demo left running, and wait for it")
    args = parser.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 120)
    if args.stop:
        return stop_stack(Path(args.data_dir).resolve(), console)
    t0 = time.monotonic()
    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    os.environ["ACTSTUDY_DATA_DIR"] = str(data_dir)
    url, pid, _ = start_stack(data_dir, args.port, console)
    console.print(f"stack ready after {time.monotonic() - t0:.0f} s: API docs {url}/docs")
    token = subprocess.run([sys.executable, "-m", "service.cli", "token", "create", "--owner", "demo"],
                           capture_output=True, text=True, check=True).stdout.strip()
    client = Client(url, token)
    spec = load_spec(args.spec)
    study = client.submit(spec.model_dump(mode="json"))
    console.print(f"submitted {args.spec} as study [bold]{study.id}[/bold] (POST {url}/api/v1/studies)")
    t1 = time.monotonic()
    study = client.wait(study.id, console=console)
    console.print(f"study {study.id}: [bold]{study.status}[/bold] in {time.monotonic() - t1:.0f} s")
    code = 0
    if study.status == "succeeded":
        print_results(console, client.results(study.id))
    else:
        console.print(f"[red]error: {study.error}[/red]")
        code = 1
    console.print(f"demo wall time {time.monotonic() - t0:.0f} s")
    if args.stop_after:
        code = stop_stack(data_dir, console) or code
    else:
        console.print(f"the stack is still running (pid {pid}); stop it with: [bold]make stop[/bold]  (or kill {pid})")
        console.print(f"try: ACTSTUDY_URL={url} ACTSTUDY_TOKEN={token} .venv/bin/actstudy status {study.id}")
    return code


if __name__ == "__main__":
    sys.exit(main())
