"""docker-compose.yml and docker/: the deployment's structure, checked without a Docker engine.

The compose file is parsed (PyYAML) and interpolated as Compose would; every command is checked against
the real entry points (`actstudy` subcommands parsed by its click group, `mlflow server --help`,
`ray start --help`), the Dockerfile against the files it copies, and docker/wait-for, which every
container starts through and most healthchecks use, is run here against real sockets. The commands in
docs/deploy.md are checked against the same entry points.
"""

from __future__ import annotations

import fnmatch
import functools
import http.server
import importlib.machinery
import importlib.util
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import click
import pytest
import yaml
from sqlalchemy.engine import make_url

from service.cli import cli

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
WAIT_FOR = ROOT / "docker" / "wait-for"
SERVICES = {"postgres", "mlflow", "ray-head", "ray-worker", "api"}
SECRETS = {"RAY_AUTH_TOKEN", "ACTSTUDY_ADMIN_TOKEN", "POSTGRES_PASSWORD"}
ENV = {"RAY_AUTH_TOKEN": "ray-secret", "ACTSTUDY_ADMIN_TOKEN": "admin-secret", "POSTGRES_PASSWORD": "pg-secret"}

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message}, ${VAR?message}, ${VAR:+alt}, ${VAR+alt}; $$ is a literal $.
_VAR = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}|\$(?P<bare>[A-Za-z_]\w*)")


class MissingVariable(ValueError):
    pass


def interpolate(value, env: dict[str, str]):
    """Compose's interpolation of every string in the parsed file."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("name") or m.group("bare")
        op, arg = m.group("op"), m.group("arg") or ""
        unset, empty = name not in env, not env.get(name)
        missing = empty if op and op.startswith(":") else unset
        if op in ("-", ":-"):
            return arg if missing else env[name]
        if op in ("?", ":?"):
            if missing:
                raise MissingVariable(f"{name}: {arg}")
            return env[name]
        if op in ("+", ":+"):
            return "" if missing else arg
        return env.get(name, "")

    return _VAR.sub(one, value)


def _start_help() -> dict[str, subprocess.Popen]:
    """`mlflow server --help` and `ray start --help` from the venv, started at import (they take seconds
    each) so they run while the other tests do; `help_flags` collects them."""
    commands = {"mlflow server": ["mlflow", "server", "--help"], "ray start": ["ray", "start", "--help"]}
    return {key: subprocess.Popen([str(Path(sys.executable).with_name(cmd[0])), *cmd[1:]], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True) for key, cmd in commands.items()}


_HELP = _start_help()


def parse_actstudy(args: list[str]) -> None:
    """Parse an `actstudy` command line as the console script would, without running it: a made-up
    subcommand or flag, or a missing value, raises click's UsageError."""
    group, args = cli, list(args)
    ctx = click.Context(group, info_name="actstudy")
    while isinstance(group, click.Group):
        name, args = args[0], args[1:]
        command = group.get_command(ctx, name)
        if command is None:
            raise click.UsageError(f"no command {name!r}", ctx)
        if isinstance(command, click.Group):
            ctx = click.Context(command, info_name=name, parent=ctx)
        group = command
    group.make_context(name, args, parent=ctx)


@pytest.fixture(scope="module")
def help_flags():
    """{"mlflow server": {flag: takes_value}, "ray start": {...}}."""
    flags = {}
    for key, proc in _HELP.items():
        out, _ = proc.communicate(timeout=180)
        assert proc.returncode == 0, f"{key} --help failed:\n{out[-2000:]}"
        flags[key] = _option_flags(out)
        assert len(flags[key]) > 10, f"no options found in {key} --help"
    return flags


def _option_flags(help_text: str) -> dict[str, bool]:
    """Click's option lines ("  -p, --port INTEGER    The port...") → {"--port": True}."""
    flags = {}
    for line in help_text.splitlines():
        if not re.match(r"^  -", line):
            continue
        head = re.split(r"\s{2,}", line.strip())[0]
        names = re.findall(r"--[A-Za-z0-9][\w-]*", head)
        takes_value = bool(re.search(r"\s[A-Z\[]", head.replace(" / ", ",")))
        for name in names:
            flags[name] = takes_value
    return flags


@pytest.fixture(scope="module")
def raw():
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def compose(raw):
    return interpolate(raw, ENV)


def services(compose) -> dict:
    return compose["services"]


def split_wait_for(command: list[str]) -> tuple[list[str], list[str]]:
    """(wait-for's own arguments, the command it execs); ([], command) without wait-for."""
    if command and command[0] == "wait-for":
        at = command.index("--")
        return command[1:at], command[at + 1:]
    return [], command


@functools.cache
def wait_for_module():
    loader = importlib.machinery.SourceFileLoader("docker_wait_for", str(WAIT_FOR))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def flag_value(command: list[str], flag: str) -> str:
    for i, arg in enumerate(command):
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
        if arg == flag:
            return command[i + 1]
    raise AssertionError(f"{flag} not in {command}")


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def mounts(service: dict) -> dict[str, tuple[str, bool]]:
    """container path → (source, read_only), from the short volume syntax."""
    out = {}
    for spec in service.get("volumes", []):
        source, target, *mode = spec.split(":")
        out[target] = (source, bool(mode) and "ro" in mode[0].split(","))
    return out


# --- the file's shape ---------------------------------------------------------------------------


def test_the_services_of_a_deployment_are_all_there(compose):
    assert SERVICES <= set(services(compose))


def test_every_service_has_a_healthcheck(compose):
    for name, service in services(compose).items():
        check = service.get("healthcheck")
        assert check and not check.get("disable"), f"{name} has no healthcheck"
        assert isinstance(check["test"], list) and check["test"][0] in ("CMD", "CMD-SHELL") and len(check["test"]) > 1, name
        for key in ("interval", "timeout", "retries", "start_period"):
            assert key in check, f"{name}'s healthcheck sets no {key}"


def strings(value):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from strings(k)
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)
    elif isinstance(value, str):
        yield value


def test_every_variable_is_required_or_has_a_default_and_secrets_are_required(raw):
    texts = list(strings(raw))
    refs = [m for text in texts for m in _VAR.finditer(text) if m.group(0) != "$$"]
    assert refs
    for m in refs:
        name, op, arg = m.group("name"), m.group("op"), m.group("arg")
        assert name, f"bare ${m.group('bare')}: use ${{{m.group('bare')}:?message}} or a default"
        assert op in (":-", ":?"), f"${{{name}}} neither required (:?message) nor defaulted (:-default)"
        if name in SECRETS:
            assert op == ":?" and arg.strip(), f"secret {name} must be required: ${{{name}:?message}}"
    assert SECRETS <= {m.group("name") for m in refs}
    # Nothing else looks like an interpolation that the pattern above missed.
    for text in texts:
        assert "$" not in _VAR.sub("", text), f"a $ that is neither ${{VAR...}} nor $$: {text!r}"


@pytest.mark.parametrize("secret", sorted(SECRETS))
def test_a_missing_secret_stops_compose_with_its_message(raw, secret):
    with pytest.raises(MissingVariable, match=secret):
        interpolate(raw, {k: v for k, v in ENV.items() if k != secret})
    with pytest.raises(MissingVariable, match=secret):
        interpolate(raw, {**ENV, secret: ""})


def test_secrets_reach_the_services_that_need_them(compose):
    s = services(compose)
    for node in ("ray-head", "ray-worker"):
        env = env_of(s[node])
        assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN"] == ENV["RAY_AUTH_TOKEN"], node
    api = env_of(s["api"])
    assert api["ACTSTUDY_RAY_AUTH_TOKEN"] == ENV["RAY_AUTH_TOKEN"]
    assert api["ACTSTUDY_ADMIN_TOKEN"] == ENV["ACTSTUDY_ADMIN_TOKEN"]
    assert env_of(s["postgres"])["POSTGRES_PASSWORD"] == ENV["POSTGRES_PASSWORD"]
    for url in (api["ACTSTUDY_DATABASE_URL"], flag_value(split_wait_for(s["mlflow"]["command"])[1], "--backend-store-uri")):
        assert make_url(url).password == ENV["POSTGRES_PASSWORD"]


def test_project_images_are_built_from_docker_dockerfile(compose):
    images = set()
    for name, service in services(compose).items():
        if name == "postgres":
            assert service["image"].startswith("postgres:16")
            continue
        build = service["build"]
        assert (ROOT / build["context"]).resolve() == ROOT, name
        assert (ROOT / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE, name
        images.add(service["image"])
    assert DOCKERFILE.is_file()
    assert len(images) == 1, f"one image for every project service, got {images}"


def test_ray_workers_reserve_gpus_and_scale(compose):
    worker = services(compose)["ray-worker"]
    assert "container_name" not in worker and "ports" not in worker, "--scale ray-worker=N needs neither"
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    gpu = [d for d in devices if d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", [])]
    assert gpu, devices
    count = str(gpu[0]["count"])
    assert count == "all" or int(count) >= 1
    assert str(interpolate(yaml.safe_load(COMPOSE.read_text()), {**ENV, "RAY_WORKER_GPUS": "2"})["services"]
               ["ray-worker"]["deploy"]["resources"]["reservations"]["devices"][0]["count"]) == "2"
    for name, service in services(compose).items():
        assert "container_name" not in service, name


def test_dependencies_wait_until_healthy(compose):
    s = services(compose)
    for name, service in s.items():
        deps = service.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: depends_on needs the long form, with a condition"
        for dep, how in deps.items():
            assert dep in s, f"{name} depends on unknown {dep}"
            assert how == {"condition": "service_healthy"}, f"{name} → {dep}: {how}"
    assert {"postgres", "mlflow", "ray-head"} <= set(s["api"]["depends_on"])
    assert "postgres" in s["mlflow"]["depends_on"]
    assert "ray-head" in s["ray-worker"]["depends_on"]


# --- how the services reach each other ------------------------------------------------------------


def test_healthchecks_and_waits_use_wait_for_correctly(compose):
    wf = wait_for_module()
    for name, service in services(compose).items():
        test = service["healthcheck"]["test"]
        if test[0] == "CMD" and test[1] == "wait-for":
            args, command = wf.parse_args(test[2:])
            assert not command and args.timeout <= 10, name
        elif name != "postgres":
            raise AssertionError(f"{name}: healthcheck without wait-for: {test}")
    pg = services(compose)["postgres"]["healthcheck"]["test"]
    assert pg[0] == "CMD-SHELL" and "pg_isready" in pg[1]


def test_addresses_line_up(compose):
    s = services(compose)
    head = s["ray-head"]["command"]
    mlflow = split_wait_for(s["mlflow"]["command"])[1]
    api_cmd = split_wait_for(s["api"]["command"])[1]
    worker_waits, worker = split_wait_for(s["ray-worker"]["command"])
    api = env_of(s["api"])
    gcs = f"ray-head:{flag_value(head, '--port')}"
    dashboard = f"http://ray-head:{flag_value(head, '--dashboard-port')}"
    assert "--head" in head and "--block" in head and "--block" in worker
    assert flag_value(head, "--num-cpus") == "0", "no trials on the head"
    assert flag_value(head, "--dashboard-host") == "0.0.0.0"
    assert flag_value(worker, "--address") == gcs
    assert f"tcp://{gcs}" in worker_waits and f"{dashboard}/api/gcs_healthz" in worker_waits
    assert api["ACTSTUDY_RAY_JOBS_URL"] == dashboard
    assert api["MLFLOW_TRACKING_URI"] == f"http://mlflow:{flag_value(mlflow, '--port')}"
    assert flag_value(mlflow, "--host") == "0.0.0.0" and flag_value(api_cmd, "--host") == "0.0.0.0"
    # Each healthcheck asks the port its own process listens on.
    ports = {"api": flag_value(api_cmd, "--port"), "mlflow": flag_value(mlflow, "--port")}
    assert f"http://127.0.0.1:{ports['api']}/healthz" in s["api"]["healthcheck"]["test"]
    assert f"http://127.0.0.1:{ports['mlflow']}/health" in s["mlflow"]["healthcheck"]["test"]
    assert f"http://127.0.0.1:{flag_value(head, '--dashboard-port')}/api/gcs_healthz" in s["ray-head"]["healthcheck"]["test"]
    # Every wait-for target is a service of this file.
    for name, service in s.items():
        for target in split_wait_for(service.get("command", []))[0]:
            if not target.startswith("-"):
                host = urlsplit(target).hostname
                assert host in s, f"{name} waits for {target}, not a service here"


def test_databases_exist_where_the_urls_point(compose):
    s = services(compose)
    init = s["postgres"]["volumes"]
    sql_mounts = [v for v in init if ":/docker-entrypoint-initdb.d/" in v]
    assert sql_mounts, "no init script creates the databases"
    created = set()
    for spec in sql_mounts:
        script = (ROOT / spec.split(":")[0]).resolve()
        assert script.is_file(), script
        created |= {m.lower() for m in re.findall(r"CREATE DATABASE\s+\"?(\w+)", script.read_text(), re.I)}
    assert {"mlflow", "actstudy"} <= created
    user = env_of(s["postgres"])["POSTGRES_USER"]
    for url in (env_of(s["api"])["ACTSTUDY_DATABASE_URL"], flag_value(split_wait_for(s["mlflow"]["command"])[1], "--backend-store-uri")):
        u = make_url(url)
        assert u.drivername == "postgresql+psycopg" and u.host == "postgres" and u.port == 5432, url
        assert u.username == user and u.database in created, url


def test_mlflow_accepts_the_hosts_it_is_reached_by(compose):
    mlflow = split_wait_for(services(compose)["mlflow"]["command"])[1]
    allowed = flag_value(mlflow, "--allowed-hosts").split(",")
    port = flag_value(mlflow, "--port")
    # MLflow matches the Host header exactly, or with fnmatch where the entry has a wildcard.
    for host in (f"mlflow:{port}", "mlflow", f"localhost:{port}", f"127.0.0.1:{port}"):
        assert any(fnmatch.fnmatch(host, a) if "*" in a else host == a for a in allowed), host
    assert "*" not in allowed
    assert flag_value(mlflow, "--artifacts-destination") in mounts(services(compose)["mlflow"])


def test_the_api_settings_come_from_its_environment(compose, monkeypatch):
    from service.settings import Settings

    for key in list(os.environ):
        if key.startswith(("ACTSTUDY_", "RAY_", "MLFLOW_")):
            monkeypatch.delenv(key)
    api = env_of(services(compose)["api"])
    for key, value in api.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.environment == "production" and settings.admin_token == ENV["ACTSTUDY_ADMIN_TOKEN"]
    # All three set: `actstudy serve` starts only the API (no local Ray head, no local mlflow).
    assert settings.ray_jobs_url and settings.mlflow_uri and settings.database_url
    assert settings.ray_auth_token == ENV["RAY_AUTH_TOKEN"]
    assert settings.driver_python == "python"
    assert str(settings.data_dir) == api["ACTSTUDY_DATA_DIR"]


def test_shared_volumes_sit_at_the_same_paths(compose):
    s = services(compose)
    data_dir = env_of(s["api"])["ACTSTUDY_DATA_DIR"]
    data_root = env_of(s["api"])["ACTSTUDY_DATA_ROOT"]
    declared = set(compose["volumes"])
    # The driver (on the head) stores Tune state under the API's data dir; the workers write checkpoints there.
    sources = set()
    for name in ("api", "ray-head", "ray-worker"):
        env, m = env_of(s[name]), mounts(s[name])
        assert env["ACTSTUDY_DATA_DIR"] == data_dir and env["ACTSTUDY_DATA_ROOT"] == data_root, name
        assert data_dir in m and not m[data_dir][1], f"{name} lacks a writable {data_dir}"
        assert data_root in m, f"{name} lacks {data_root}"
        sources.add(m[data_dir][0])
    assert len(sources) == 1 and sources <= declared
    assert mounts(s["ray-worker"])[data_root][1], "datasets are read-only on the workers"
    for name, service in s.items():
        for source, _ in mounts(service).values():
            assert source.startswith((".", "/")) or source in declared, f"{name}: volume {source} not declared"
    # The names the workers read are the ones the code reads.
    spec = importlib.util.spec_from_file_location("_locations", ROOT / "workers" / "data" / "_locations.py")
    locations = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(locations)
    worker_env = env_of(s["ray-worker"])
    assert locations.DATA_ROOT_ENV in worker_env and locations.CACHE_DIR_ENV in worker_env


# --- the Dockerfile ---------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_installs_the_pins_then_the_project():
    steps = dockerfile_instructions()
    assert steps[0] == ("FROM", "python:3.11-slim")
    runs = [rest for word, rest in steps if word == "RUN"]
    lock = next(i for i, r in enumerate(runs) if re.search(r"pip install (.* )?-r \S*requirements\.lock", r))
    project = next(i for i, r in enumerate(runs) if "pip install --no-deps" in r)
    assert lock < project


def test_dockerfile_copies_only_files_that_exist_and_every_package():
    ignore = [p.strip().rstrip("/") for p in (ROOT / "docker" / "Dockerfile.dockerignore").read_text().splitlines()
              if p.strip() and not p.startswith("#")]
    copied = set()
    for word, rest in dockerfile_instructions():
        if word not in ("COPY", "ADD"):
            continue
        args = [a for a in shlex.split(rest) if not a.startswith("--")]
        assert word == "COPY", "COPY, not ADD"
        for source in args[:-1]:
            assert (ROOT / source).exists(), f"COPY {source}: no such file in the build context"
            assert not any(fnmatch.fnmatch(source, p) for p in ignore), f"COPY {source} is dockerignored"
            copied.add(source)
    assert "requirements.lock" in copied and "pyproject.toml" in copied and "docker/wait-for" in copied
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    for pattern in packages:
        top = pattern.rstrip("*")
        assert top in copied, f"the package {top} is not copied into the image"


# --- docker/wait-for, exercised ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def http_server():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/ok" else 500)
            self.end_headers()
            self.wfile.write(b"x")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(WAIT_FOR), *args], capture_output=True, text=True, timeout=timeout)


def test_wait_for_is_executable_and_runs_the_command_once_all_answer(http_server):
    assert WAIT_FOR.stat().st_mode & 0o111, "docker/wait-for must be executable"
    host, port = urlsplit(http_server).hostname, urlsplit(http_server).port
    r = wait_for("--timeout=5", f"tcp://{host}:{port}", f"{host}:{port}", f"{http_server}/ok", "--",
                 sys.executable, "-c", "import sys; print('started', sys.argv[1:])", "--flag=1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "started ['--flag=1']"


def test_wait_for_gives_up_after_its_timeout(http_server):
    for target in (f"{http_server}/broken", f"127.0.0.1:{closed_port()}"):
        start = time.monotonic()
        r = wait_for("--timeout=1", "--interval=0.2", target, "--", sys.executable, "-c", "print('ran')")
        assert r.returncode == 1 and "ran" not in r.stdout, r
        assert target in r.stderr and "did not answer" in r.stderr
        assert time.monotonic() - start < 10


def test_wait_for_rejects_bad_usage():
    assert wait_for("not-a-target").returncode == 2
    assert wait_for("127.0.0.1:1", "--").returncode == 2
    assert wait_for("--timeout=1", "127.0.0.1:5").returncode == 1



def test_wait_for_says_when_the_command_cannot_run(http_server):
    r = wait_for("--timeout=5", f"{http_server}/ok", "--", "/nonexistent/cmd")
    assert r.returncode == 127 and "/nonexistent/cmd" in r.stderr


# --- last, so the --help runs started at import have had the time the other tests took --------------


def test_commands_use_real_entry_points_and_flags(compose, help_flags):
    seen = set()
    for name, service in services(compose).items():
        if "command" not in service:
            assert name == "postgres", f"{name} relies on the image's CMD"
            continue
        command = service["command"]
        assert isinstance(command, list), f"{name}: exec form, so no shell mangles the arguments"
        wait_args, real = split_wait_for(command)
        if wait_args:
            wait_for_module().parse_args([*wait_args, "--", *real])
        if real[0] == "actstudy":
            parse_actstudy(real[1:])  # raises on an unknown subcommand or flag
            seen.add("actstudy " + real[1])
            continue
        key = " ".join(real[:2])
        assert key in help_flags, f"{name} runs {real[:2]}: neither actstudy, mlflow server nor ray start"
        seen.add(key)
        known = help_flags[key]
        for arg in real[2:]:
            assert arg.startswith("--"), f"{name}: {arg!r}: pass values as --flag=value"
            flag, eq, _ = arg.partition("=")
            assert flag in known, f"{name}: `{key}` has no {flag}"
            assert known[flag] == bool(eq), f"{name}: {flag} {'takes' if known[flag] else 'takes no'} value"
    assert seen == {"actstudy serve", "mlflow server", "ray start"}


def test_the_deploy_guide_uses_real_commands_and_flags(help_flags):
    text = DEPLOY_DOC.read_text()
    blocks = "\n".join(re.findall(r"^```\w*\n(.*?)^```", text, re.S | re.M)).replace("\\\n", " ")
    commands = re.findall(r"(?:^|[ \t])actstudy[ \t]+([a-z][^#\n]*)", blocks, re.M)
    assert len(commands) >= 6
    for line in commands:
        parse_actstudy(shlex.split(line))  # raises on a made-up subcommand or flag
    for key in ("mlflow server", "ray start"):
        spans = re.findall(re.escape(key) + r"([^`\n]*)", text)
        assert spans, key
        for span in spans:
            for flag in re.findall(r"(?<![\w-])--[a-z][\w-]*", span):
                assert flag in help_flags[key], f"docs/deploy.md: `{key}` has no {flag}"


def test_parse_actstudy_refuses_what_the_console_script_refuses():
    parse_actstudy(["serve", "--host=0.0.0.0", "--port=8000"])
    parse_actstudy(["token", "create", "--owner", "alice"])
    for bad in (["serve", "--hots=x"], ["nope"], ["token", "mint"], ["serve", "--port"], ["token", "create"]):
        with pytest.raises(click.UsageError):
            parse_actstudy(bad)
