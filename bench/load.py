"""Reads under a submission burst: `actstudy serve` on embedded defaults, on loopback only, bounded in time.

    .venv/bin/python bench/load.py              # 16 readers; 20 s idle, then 20 s with 3 owners × 4 submissions
    .venv/bin/python bench/load.py --quick      # 4 readers, 3 s each, 2 submissions (the test suite runs this)

Readers loop on `GET /api/v1/studies/{id}` and `GET /api/v1/studies?limit=1` (one row, so that both phases read
the same amount, though the burst adds studies) as fast as they are answered; the same
readers are measured first with the service idle, then while a burst of submissions starts drivers and trials
on the same machine — side by side in one run. Prints requests/s, p50 and p99 latency of each phase, every
status code seen, and p99 under the burst over p99 idle (target ≤ 2). Every study is cancelled and the stack
stopped at the end. Absolute numbers depend on the machine; read the ratio.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from studies.local import free_port, wait_http  # noqa: E402

SPEC = {"name": "load", "dataset": {"name": "mnist1d"}, "model": {"name": "mlp", "hidden": [32]},
        "activations": ["relu", "telu"], "search": {"trials_per_activation": 2, "pruner": "none"},
        "training": {"epochs": 2}, "confirm": {"seeds": 2}, "resources": {"cpus_per_trial": 1}}


def _token(env: dict, owner: str) -> str:
    return subprocess.run([sys.executable, "-m", "service.cli", "token", "create", "--owner", owner], env=env, cwd=ROOT,
                          capture_output=True, text=True, check=True, timeout=120).stdout.strip()


def _read(url: str, token: str, study_id: str, until: float, latencies: list[float], codes: Counter, most: int) -> None:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        for i in range(most):
            if time.monotonic() >= until:
                return
            path = f"/api/v1/studies/{study_id}" if i % 2 == 0 else "/api/v1/studies?limit=1"
            start = time.perf_counter()
            try:
                codes[http.get(path).status_code] += 1
            except httpx.HTTPError as exc:
                codes[type(exc).__name__] += 1
            latencies.append((start, time.perf_counter() - start))


def _phase(url: str, token: str, study_id: str, readers: int, seconds: float, during=None) -> dict:
    latencies: list[float] = []
    codes: Counter = Counter()
    until = time.monotonic() + seconds
    threads = [threading.Thread(target=_read, args=(url, token, study_id, until, latencies, codes, 100_000)) for _ in range(readers)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    extra = during() if during else None
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return {**_quantiles([s for _, s in latencies]), "requests": len(latencies), "per_s": len(latencies) / wall, "codes": dict(codes),
            "extra": extra, "windows": _windows(latencies, start, seconds)}


def _quantiles(latencies: list[float]) -> dict:
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [latencies[0]] * 99
    return {"p50_ms": 1000 * q[49], "p99_ms": 1000 * q[98]}


def _windows(latencies: list[tuple[float, float]], start: float, seconds: float, parts: int = 4) -> list[float]:
    """p99 (ms) of the requests started in each quarter of the phase: where the slow ones are."""
    width = seconds / parts
    return [_quantiles(chunk)["p99_ms"] if len(chunk := [s for t, s in latencies if i * width <= t - start < (i + 1) * width]) > 1
            else float("nan") for i in range(parts)]


def _burst(url: str, tokens: list[str], per_owner: int) -> Counter:
    """Every owner submits `per_owner` studies at once; the answers' status codes."""
    codes: Counter = Counter()

    def submit(token: str) -> None:
        r = httpx.post(f"{url}/api/v1/studies", json=SPEC, headers={"Authorization": f"Bearer {token}"}, timeout=120)
        codes[r.status_code] += 1

    threads = [threading.Thread(target=submit, args=(t,)) for t in tokens for _ in range(per_owner)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return codes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/load.py")
    parser.add_argument("--quick", action="store_true", help="4 readers, 3 s per phase, 1 owner × 2 submissions")
    parser.add_argument("--readers", type=int)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--owners", type=int, help="owners submitting in the burst (default 3; --quick 1)")
    parser.add_argument("--per-owner", type=int, help="submissions per owner (default 4, the quota; --quick 2)")
    args = parser.parse_args(argv)
    readers = args.readers or (4 if args.quick else 16)
    seconds = args.seconds or (3.0 if args.quick else 20.0)
    owners = args.owners or (1 if args.quick else 3)
    per_owner = args.per_owner or (2 if args.quick else 4)

    with tempfile.TemporaryDirectory(prefix="actstudy-load-") as tmp:
        data = Path(tmp) / "data"
        env = {**os.environ, "ACTSTUDY_DATA_DIR": str(data), "ACTSTUDY_ADMIN_TOKEN": secrets.token_urlsafe(24),
               "ACTSTUDY_RECONCILE_INTERVAL_S": "2"}
        port = free_port()
        log = Path(tmp) / "serve.out"
        serve = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--port", str(port), "--data-dir", str(data)],
                                 env=env, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_http(f"{url}/readyz", serve, log, 300, "actstudy serve")
            tokens = [_token(env, f"owner{i}") for i in range(owners)]
            admin = env["ACTSTUDY_ADMIN_TOKEN"]
            first = httpx.post(f"{url}/api/v1/studies", json=SPEC, headers={"Authorization": f"Bearer {tokens[0]}"}, timeout=120)
            first.raise_for_status()
            study_id = first.json()["id"]
            httpx.post(f"{url}/api/v1/studies/{study_id}/cancel", headers={"Authorization": f"Bearer {tokens[0]}"}, timeout=60)
            time.sleep(2)  # its driver gone: the idle phase reads a quiet service
            idle = _phase(url, admin, study_id, readers, seconds)
            burst = _phase(url, admin, study_id, readers, seconds, during=lambda: _burst(url, tokens, per_owner))
        finally:
            for study in httpx.get(f"{url}/api/v1/studies?limit=100", headers={"Authorization": f"Bearer {env['ACTSTUDY_ADMIN_TOKEN']}"},
                                   timeout=60).json().get("data", []) if serve.poll() is None else []:
                if study["status"] in ("queued", "running"):
                    httpx.post(f"{url}/api/v1/studies/{study['id']}/cancel",
                               headers={"Authorization": f"Bearer {env['ACTSTUDY_ADMIN_TOKEN']}"}, timeout=60)
            os.killpg(serve.pid, signal.SIGTERM)
            serve.wait(120)

    print(f"{readers} readers, {seconds:g} s per phase; burst: {owners} owner(s) × {per_owner} submissions at once")
    print(f"{'phase':<8}{'requests':>10}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}  codes")
    for name, r in (("idle", idle), ("burst", burst)):
        print(f"{name:<8}{r['requests']:>10}{r['per_s']:>10.1f}{r['p50_ms']:>10.1f}{r['p99_ms']:>10.1f}  {r['codes']}")
    print(f"submissions: {dict(burst['extra'])}")
    for name, r in (("idle", idle), ("burst", burst)):
        print(f"p99 ms by quarter of the {name} phase: " + ", ".join(f"{v:.0f}" for v in r["windows"]))
    ratio = burst["p99_ms"] / idle["p99_ms"]
    print(f"p99 burst / idle: {ratio:.2f} (target ≤ 2)  throughput burst / idle: {burst['per_s'] / idle['per_s']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
