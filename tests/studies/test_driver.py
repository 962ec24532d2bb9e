"""The study driver's own decisions, before any cluster work: what it does with a study it cannot run."""

from __future__ import annotations

import pytest

from studies import driver
from studies.records import RecordStore, Study, StudyStatus, migrate


@pytest.fixture
def store(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'records.db'}"
    migrate(url)
    monkeypatch.setenv("ACTSTUDY_DATABASE_URL", url)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # never reached: the spec fails first
    monkeypatch.setenv("ACTSTUDY_DATA_DIR", str(tmp_path / "data"))
    return RecordStore(url)


def test_a_spec_that_no_longer_validates_fails_the_study_once_saying_why(store):
    """A deterministic failure: the driver records it, so the reconciler does not relaunch it three times."""
    with store.session() as s:
        s.add(Study(id="old1", owner="alice", name="old", status=StudyStatus.running.value, attempts=1,
                    spec={"activations": ["relu"], "training": {"epochs": "3"}}))  # stored before types were strict
    assert driver.main(["old1"]) == 2
    study = store.get("old1")
    assert study.status == "failed" and study.finished_at is not None
    assert study.error.startswith("the study's spec does not validate") and "training.epochs" in study.error
