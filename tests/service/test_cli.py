"""The service's `actstudy` commands against the app on a real database, in-process: `submit`, `status`,
`results`, `cancel` as a user types them (the client's HTTP goes to the app through Starlette's test client)."""

from __future__ import annotations

import json

import pytest
import yaml
from fastapi.testclient import TestClient

from service import cli as service_cli
from service.client import Client
from studies.records import StudyStatus
from tests.service.test_concurrency import CountingJobs
from tests.utils.factories import TINY_SPEC, add_study, results_for


@pytest.fixture
def as_user(api, monkeypatch):
    """Point `actstudy` at the app, as a fresh owner; Ray is a stand-in that accepts every launch."""
    api.client.app.state.jobs = CountingJobs()
    owner, headers = api.owner()
    client = Client("http://testserver", None)
    client.http = TestClient(api.client.app, base_url="http://testserver/api/v1", headers=headers)
    monkeypatch.setattr(Client, "from_env", classmethod(lambda cls: client))
    return api, owner


def run(capsys, *args: str) -> tuple[int, str]:
    code = service_cli.main(list(args))
    return code, capsys.readouterr().out


def test_submit_prints_the_study_and_quiet_only_its_id(as_user, tmp_path, capsys):
    api, owner = as_user
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(TINY_SPEC))
    code, out = run(capsys, "submit", str(path))
    assert code == 0
    shown = yaml.safe_load(out)
    assert set(shown) == {"id", "status", "links"} and shown["status"] == "queued"
    assert api.store.get(shown["id"]).owner == owner
    code, out = run(capsys, "submit", "-q", str(path))
    assert code == 0 and api.store.get(out.strip()) is not None


def test_status_results_and_cancel(as_user, capsys):
    api, owner = as_user
    done = add_study(api.store, owner, status=StudyStatus.succeeded, results=results_for(["telu", "relu"], baseline="relu"))
    code, out = run(capsys, "status", done)
    assert code == 0 and f"study {done}" in out and "succeeded" in out
    code, out = run(capsys, "results", done, "--json")
    assert code == 0 and json.loads(out)["ranking"] == ["telu", "relu"]
    code, out = run(capsys, "results", done)
    assert code == 0 and "best activation: telu" in out
    queued = add_study(api.store, owner)
    code, out = run(capsys, "cancel", queued)
    assert code == 0 and out.strip() == f"{queued}: cancelled"
    code, out = run(capsys, "status", queued)
    assert code == 1 and "cancelled" in out  # a study that will not succeed: non-zero
