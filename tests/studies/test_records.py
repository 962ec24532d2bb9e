"""Study records on both databases: migrations, status rules, and results with NaN (one-seed p-values)."""

import math
import uuid

import pytest

from studies.records import RecordStore, Study, StudyStatus, migrate


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    migrate(url)
    s = RecordStore(url)
    yield s
    s.engine.dispose()


def _add(store) -> str:
    study_id = uuid.uuid4().hex[:12]
    with store.session() as s:
        s.add(Study(id=study_id, owner="o-" + study_id, name="n", spec={"activations": ["relu"]}, status="queued"))
    return study_id


def test_results_with_nan_are_stored_as_null(store):
    study_id = _add(store)
    assert store.mark(study_id, StudyStatus.succeeded, results={"p_holm": math.nan, "ci": [0.5, math.inf], "ok": 1.0})
    assert store.get(study_id).results == {"p_holm": None, "ci": [0.5, None], "ok": 1.0}


def test_a_terminal_status_is_not_overwritten(store):
    study_id = _add(store)
    assert store.mark(study_id, StudyStatus.running)
    assert store.get(study_id).started_at is not None
    assert store.mark(study_id, StudyStatus.cancelled)
    assert not store.mark(study_id, StudyStatus.failed, error="late driver exit")
    study = store.get(study_id)
    assert study.status == "cancelled" and study.error is None and study.finished_at is not None

