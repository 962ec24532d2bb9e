"""Optuna storage beside the records database: drivers that start together (studies submitted at once) each open it,
on a new database, without one of them failing on the other's table creation or schema version (it did: CI saw
`UNIQUE constraint failed: alembic_version.version_num` fail a study; 6 processes × 6 rounds failed 2 opens before)."""

from __future__ import annotations

import multiprocessing as mp

import pytest

from tests.utils.databases import fresh_postgres_database

OPENERS, ROUNDS = 6, 2


def _open(url: str) -> str:
    from studies.search import open_storage

    try:
        open_storage(url).get_all_studies()
        return "ok"
    except Exception as exc:  # noqa: BLE001 — reported to the test
        return f"{type(exc).__name__}: {exc}"


def _race(url: str) -> list[str]:
    with mp.get_context("spawn").Pool(OPENERS) as pool:
        return pool.map(_open, [url] * OPENERS)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_drivers_starting_together_all_open_a_new_storage(kind, tmp_path):
    for round_ in range(ROUNDS):
        if kind == "sqlite":
            (tmp_path / f"r{round_}").mkdir()
            outcomes = _race(f"sqlite:///{tmp_path}/r{round_}/records.db")
        else:
            with fresh_postgres_database() as url:
                outcomes = _race(url)
        assert outcomes == ["ok"] * OPENERS, [o for o in outcomes if o != "ok"]
