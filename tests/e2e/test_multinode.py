"""A study on a real multi-node Ray cluster on one machine: a head with no CPUs and two worker nodes,
each a separate `ray start` process with one CPU and its own dataset cache folder (tests/utils/cluster.py).
`actstudy run` drives the study as a subprocess; the trials must land on both workers (each trial's MLflow
run names its node in `actstudy.node_id`) and each node must build its MNIST-1D cache exactly once.

    .venv/bin/python -m pytest tests/e2e/test_multinode.py -q -p no:cacheprovider      # ~2 min on 2 cores
"""

from __future__ import annotations

import json
import os
from collections import defaultdict

import pytest

from tests.utils.cluster import MultiNodeCluster
from tests.utils.runs import StudyRunsView, kill_group, start_study, tail, write_spec

pytestmark = pytest.mark.slow

SPEC = {
    "name": "multinode",
    "dataset": {"name": "mnist1d"},
    "model": {"name": "mlp", "hidden": [32, 32]},
    "activations": ["relu", "telu"],
    "search": {"trials_per_activation": 3, "pruner": "none", "sampler": "random"},
    "training": {"epochs": 2, "batch_size": 256},
    "confirm": {"seeds": 1},
}


@pytest.fixture
def cluster(tmp_path):
    c = MultiNodeCluster.start(tmp_path / "cluster", os.environ["RAY_AUTH_TOKEN"], workers=2, cpus_per_worker=1)
    yield c
    c.stop()


def test_trials_land_on_both_workers_and_each_node_caches_once(cluster, mlflow_server, tmp_path):
    nodes = cluster.worker_node_ids()
    assert len(nodes) == 2
    assert cluster._query("ray.cluster_resources().get('CPU')") == 2  # the head runs no trials
    log = tmp_path / "study.log"
    proc = start_study(write_spec(tmp_path, SPEC), ray_address=cluster.head.address, mlflow_uri=mlflow_server.url,
                       study_id="mn1", data_dir=tmp_path / "data", log=log)
    try:
        assert proc.wait(420) == 0, tail(log)
    finally:
        kill_group(proc)
    assert "ranking by test accuracy" in log.read_text()

    view = StudyRunsView(mlflow_server.url, "multinode-mn1")
    trials = view.runs("trial")
    assert len(trials) == 6 and all(r.info.status == "FINISHED" for r in trials), [(r.info.status, r.data.tags) for r in trials]
    assert {r.data.tags["actstudy.node_id"] for r in trials} == set(nodes.values()), \
        ("the trials did not use both workers", nodes, [r.data.tags.get("actstudy.node_id") for r in trials])

    # Each node generated MNIST-1D once, into its own cache folder, and every later trial there read it.
    attempts_on = defaultdict(list)
    for r in trials + view.runs("confirm"):
        attempts_on[r.data.tags["actstudy.node_id"]].append(r.info.start_time / 1000)
    for worker in cluster.workers:
        files = sorted(p.name for p in worker.cache_dir.iterdir())
        caches = [f for f in files if f.startswith("mnist1d-") and f.endswith(".npz")]
        assert len(caches) == 1 and files == caches, (worker.index, files)
        written = (worker.cache_dir / caches[0]).stat().st_mtime
        starts = sorted(attempts_on[nodes[worker.index]])
        # Trials on a node run one at a time (one CPU): had a later one rebuilt the cache, the file
        # would be newer than that trial's start.
        assert len(starts) >= 2 and written < starts[1], (worker.index, written, starts)
    print("FIGURES", json.dumps({"runs_per_node": [len(attempts_on[nodes[w.index]]) for w in cluster.workers],
                                 "cache_files_per_node": [len(list(w.cache_dir.glob("mnist1d-*.npz"))) for w in cluster.workers]}))
