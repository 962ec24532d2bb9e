"""bench/load.py runs, small (--quick), so it never rots: `actstudy serve` on embedded defaults, readers idle and
during a burst of submissions, side by side, every read answered 200, and the ratio printed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_load_bench_runs_quick():
    proc = subprocess.run([sys.executable, "bench/load.py", "--quick"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    rows = {m.group(1): m for m in re.finditer(r"^(idle|burst)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\{.*\})$", out, re.M)}
    assert set(rows) == {"idle", "burst"}, out
    for row in rows.values():
        assert int(row.group(2)) > 0 and row.group(6) == f"{{200: {row.group(2)}}}", out  # every read answered, 200
    assert re.search(r"^submissions: \{201: 2\}$", out, re.M), out
    assert re.search(r"^p99 burst / idle: [\d.]+ \(target ≤ 2\)", out, re.M), out
