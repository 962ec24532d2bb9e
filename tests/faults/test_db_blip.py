"""Drop every database connection mid-study: `actstudy serve` (API only) on PostgreSQL, the session's Ray
head and MLflow server. While a study runs, PostgreSQL is told to terminate every connection to the
study records' database (the API's pool and the driver's: `pg_terminate_backend`), BLIPS times a few
seconds apart, as when the database restarts or a proxy drops its connections. The status the API reports
stays right all along (`running`, never failed, no relaunch: attempts stays 1); the driver's progress
writes carry on over new connections and the study ends `succeeded` with its full progress. (The API's own
restart mid-study is tests/service/test_e2e.py.)

    .venv/bin/python -m pytest tests/faults/test_db_blip.py -q -p no:cacheprovider -s   # ~3 min on 2 cores
"""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.utils.runs import ServeProcess, StudyRunsView, wait_for

pytestmark = pytest.mark.slow

BLIPS = 4
SPEC = {
    "name": "dbblip",
    "dataset": {"name": "mnist1d"},
    "model": {"name": "mlp", "hidden": [512, 512]},
    "activations": ["relu", "telu"],
    "search": {"trials_per_activation": 3, "pruner": "none", "sampler": "random"},
    "training": {"epochs": 6, "batch_size": 32},
    "confirm": {"seeds": 1},
}


@pytest.fixture
def api(tmp_path, ray_head, mlflow_server, postgres_url):
    serve = ServeProcess(tmp_path, db_url=postgres_url, mlflow_uri=mlflow_server.url, ray_head=ray_head)
    serve.start()
    yield serve
    serve.stop()


def drop_connections(postgres_url: str) -> int:
    """Terminate every other connection to the records database; returns how many there were."""
    database = make_url(postgres_url).database
    admin = create_engine(make_url(postgres_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            return len(conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                         "WHERE datname = :db AND pid <> pg_backend_pid()"), {"db": database}).all())
    finally:
        admin.dispose()


def test_dropped_database_connections_leave_the_status_right(api, mlflow_server, postgres_url):
    study_id = api.submit(SPEC)
    view = StudyRunsView(mlflow_server.url, f"dbblip-{study_id}")
    wait_for(lambda: api.study(study_id)["status"] == "running" and view.runs("trial"), 300,
             "a running study with a trial", proc=api.process, log=api.log)

    dropped, seen = [], []
    for _ in range(BLIPS):
        dropped.append(drop_connections(postgres_url))
        s = api.study(study_id)  # the first request after the drop: a dead pooled connection is replaced
        seen.append(s["status"])
        assert s["status"] in ("running", "succeeded") and s["attempts"] == 1, s
        time.sleep(3)
    assert sum(dropped) > 0, "no connection was open to drop"

    def ended():
        s = api.study(study_id)
        assert s["attempts"] == 1, s  # the driver was never relaunched
        return s if s["status"] in ("succeeded", "failed", "cancelled") else None

    s = wait_for(ended, 480, "the end of the study", proc=api.process, log=api.log, every=1)
    assert s["status"] == "succeeded" and s["error"] is None, (s["error"], api.driver_log(study_id, 1))
    for phase, per in (("search", 3), ("confirm", 1)):
        acts = s["progress"]["phases"][phase]["activations"]
        assert all(a["done"] == a["total"] == per for a in acts.values()), acts
    assert set(api.results(study_id)["ranking"]) == {"relu", "telu"}
    figures = view.no_loss_report(6)
    figures.update(fault="database connections terminated", blips=BLIPS, connections_dropped=sum(dropped),
                   status_seen_after_each=seen)
    print("FIGURES", json.dumps(figures))
