"""The REST API through FastAPI's TestClient, on SQLite and on PostgreSQL: authentication, ownership,
validation (422 with field-level messages), body size (413), per-owner limits (429), conflicts (409),
unknown ids (404), health, and secrets kept out of every answer.

    .venv/bin/python -m pytest tests/service/test_api.py -q      # ~1 min; the `slow` ones start a Ray head

Studies are inserted with the factories in tests/utils, so only the tests marked `slow` launch a driver
on a real Ray head; the others answer before a launch (401, 413, 422, 429) or find no Ray configured (503).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import select, text

from service.auth import ApiToken
from service.cli import main as cli_main
from service.jobs import reconcile_all
from service.settings import Settings
from studies.records import StudyStatus
from tests.utils.factories import add_study, auth, results_for, spec, unique_owner

STUDIES = "/api/v1/studies"


def _study_url(study_id: str, suffix: str = "") -> str:
    return f"{STUDIES}/{study_id}{suffix}"


# --- authentication -------------------------------------------------------------------------------


@pytest.mark.parametrize("method, path", [
    ("POST", STUDIES),
    ("GET", STUDIES),
    ("GET", _study_url("0123456789ab")),
    ("GET", _study_url("0123456789ab", "/results")),
    ("POST", _study_url("0123456789ab", "/cancel")),
])
@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer "},
    {"Authorization": "Basic dXNlcjpwYXNz"},
    {"Authorization": "Bearer not-a-real-token"},
    {"Authorization": "Bearer dev-admin-token"},  # there is no built-in admin token (there once was this one)
    {"Authorization": "Bearer caf\u00e9".encode("latin-1")},  # a non-ASCII token is refused, not a 500
], ids=["none", "empty", "basic", "unknown", "default-admin", "non-ascii"])
def test_study_routes_need_a_valid_bearer_token(api, method, path, headers):
    r = api.client.request(method, path, headers=headers, json=spec())
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"] == "Bearer"
    assert "token" in r.json()["detail"]


def test_no_token_answers_401_before_the_body_is_validated(api):
    r = api.client.post(STUDIES, json={"activations": ["no-such-activation"]})
    assert r.status_code == 401


@pytest.mark.parametrize("path", ["/healthz", "/api/v1/activations", "/openapi.json", "/docs"])
def test_public_routes_need_no_token(api, path):
    assert api.client.get(path).status_code == 200


def test_admin_token_comes_from_settings(api):
    r = api.client.get(STUDIES, headers=api.admin)
    assert r.status_code == 200
    assert set(r.json()) == {"data", "count"}


def test_token_create_mints_a_token_that_is_stored_hashed(api, monkeypatch, capsys):
    owner = unique_owner("cli")
    monkeypatch.setenv("ACTSTUDY_DATABASE_URL", api.settings.db_url)
    assert cli_main(["token", "create", "--owner", owner]) == 0
    token = capsys.readouterr().out.strip()
    assert len(token) >= 32 and "\n" not in token

    r = api.client.get(STUDIES, headers=auth(token))
    assert r.status_code == 200 and r.json() == {"data": [], "count": 0}
    study_id = add_study(api.store, owner)
    assert api.client.get(_study_url(study_id), headers=auth(token)).json()["owner"] == owner

    with api.store.sessions() as s:
        rows = s.scalars(select(ApiToken).where(ApiToken.owner == owner)).all()
        assert [r.token_hash for r in rows] == [hashlib.sha256(token.encode()).hexdigest()]
    with api.store.engine.connect() as conn:  # nothing in the table holds the token itself
        dump = repr(conn.execute(text("select * from api_tokens")).all())
    assert token not in dump


def test_two_tokens_of_one_owner_see_the_same_studies(api):
    owner, first = api.owner()
    _, second = api.owner(owner)
    study_id = add_study(api.store, owner)
    for headers in (first, second):
        assert [s["id"] for s in api.client.get(STUDIES, headers=headers).json()["data"]] == [study_id]


# --- ownership ------------------------------------------------------------------------------------


def test_another_owners_study_answers_404_like_an_unknown_one(api):
    alice, alice_h = api.owner()
    _, bob_h = api.owner()
    study_id = add_study(api.store, alice, status=StudyStatus.succeeded, results=results_for(["relu", "telu"]))
    assert api.client.get(_study_url(study_id), headers=alice_h).status_code == 200
    for suffix, method in (("", "GET"), ("/results", "GET"), ("/cancel", "POST")):
        theirs = api.client.request(method, _study_url(study_id, suffix), headers=bob_h)
        unknown = api.client.request(method, _study_url("ffffffffffff", suffix), headers=bob_h)
        assert theirs.status_code == unknown.status_code == 404
        assert theirs.json()["detail"] == f"no study {study_id!r}"  # says no more than for an unknown id
    assert api.store.get(study_id).status == "succeeded"


def test_bob_cannot_cancel_alices_running_study(api):
    alice, _ = api.owner()
    _, bob_h = api.owner()
    study_id = add_study(api.store, alice, status=StudyStatus.running)
    assert api.client.post(_study_url(study_id, "/cancel"), headers=bob_h).status_code == 404
    assert api.store.get(study_id).status == "running"


def test_lists_show_only_the_callers_studies_and_admin_sees_all(api):
    alice, alice_h = api.owner()
    bob, bob_h = api.owner()
    a1, a2 = add_study(api.store, alice), add_study(api.store, alice, status=StudyStatus.failed)
    b1 = add_study(api.store, bob)
    assert {s["id"] for s in api.client.get(STUDIES, headers=alice_h).json()["data"]} == {a1, a2}
    bob_list = api.client.get(STUDIES, headers=bob_h).json()
    assert [s["id"] for s in bob_list["data"]] == [b1] and bob_list["count"] == 1
    everyone = api.client.get(STUDIES, params={"limit": 100}, headers=api.admin).json()
    assert {a1, a2, b1} <= {s["id"] for s in everyone["data"]}
    assert everyone["count"] >= 3
    for study_id in (a1, b1):
        assert api.client.get(_study_url(study_id), headers=api.admin).status_code == 200


def test_admin_may_cancel_anyones_study(api):
    alice, alice_h = api.owner()
    study_id = add_study(api.store, alice)
    r = api.client.post(_study_url(study_id, "/cancel"), headers=api.admin)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert api.client.get(_study_url(study_id), headers=alice_h).json()["error"] == "cancelled by admin"


def test_list_filters_by_status_and_pages_newest_first(api):
    owner, headers = api.owner()
    ids = [add_study(api.store, owner, status=s) for s in ("queued", "failed", "queued", "succeeded")]
    queued = api.client.get(STUDIES, params={"status": "queued"}, headers=headers).json()
    assert {s["id"] for s in queued["data"]} == {ids[0], ids[2]} and queued["count"] == 2
    page = api.client.get(STUDIES, params={"limit": 2, "offset": 1}, headers=headers).json()
    assert page["count"] == 4 and len(page["data"]) == 2
    everything = api.client.get(STUDIES, headers=headers).json()["data"]
    assert [s["id"] for s in everything][1:3] == [s["id"] for s in page["data"]]
    created = [s["created_at"] for s in everything]
    assert created == sorted(created, reverse=True)


# --- validation: 422 with field-level messages -----------------------------------------------------


BAD_SPECS = {
    "unknown activation": (spec(activations=["relu", "swishy"]), ["body", "activations", 1], "valid names: relu"),
    "lr low >= high": (spec(search={"lr": {"low": 0.1, "high": 0.01}}), ["body", "search", "lr"], "low must be < high"),
    "log range from 0": (spec(search={"l2": {"low": 0, "high": 0.01}}), ["body", "search", "l2"], "needs low > 0"),
    "unknown dataset": (spec(dataset={"name": "imagenet"}), ["body", "dataset", "name"], "mnist1d"),
    "extra field": (spec(colour="blue"), ["body", "colour"], "Extra inputs are not permitted"),
    "epochs not a number": (spec(training={"epochs": "many"}), ["body", "training", "epochs"], "valid integer"),
    "epochs as text": (spec(training={"epochs": "1"}), ["body", "training", "epochs"], "valid integer"),  # strict types
    "epochs as a boolean": (spec(training={"epochs": True}), ["body", "training", "epochs"], "valid integer"),
    "hidden size as text": (spec(model={"name": "mlp", "hidden": ["64"]}), ["body", "model", "hidden", 0], "valid integer"),
    "zero trials": (spec(search={"trials_per_activation": 0}), ["body", "search", "trials_per_activation"], "greater than or equal to 1"),
    "no activations": (spec(activations=[]), ["body", "activations"], "at least 1"),
    "activations not a list": (spec(activations="relu"), ["body", "activations"], "valid list"),
    "bad pwlu parameter": (spec(activations=[{"name": "pwlu", "segments": 1}]), ["body", "activations", 0], "segments"),
    "unknown pwlu parameter": (spec(activations=[{"name": "pwlu", "wings": 2}]), ["body", "activations", 0], "wings"),
    "duplicate activation": (spec(activations=["relu", "RELU"]), ["body"], "duplicated: relu"),
    "baseline not in study": (spec(confirm={"baseline": "gelu"}), ["body"], "confirm.baseline"),
    "model needs images": (spec(model={"name": "cnn"}), ["body"], "needs an image dataset"),
    "bad name": (spec(name="../../etc"), ["body", "name"], "letters, digits"),
    # Activation parameters are typed from each activation's constructor: no text where a number belongs
    # (it went unescaped into the study's labels), no structures, no values outside an option's choices.
    "quoted text as a number": (spec(activations=[{"name": "elu", "alpha": "x' or '1'='1"}]), ["body", "activations", 0], "alpha"),
    "a mapping as a number": (spec(activations=[{"name": "elu", "alpha": {"a": 1}}]), ["body", "activations", 0], "alpha"),
    "deeply nested list": (spec(activations=[{"name": "elu", "alpha": json.loads("[" * 300 + "]" * 300)}]),
                           ["body"], "nested deeper than 32 levels"),  # was a 500 (serialising it)
    "nested list": (spec(activations=[{"name": "elu", "alpha": [[[1]]]}]), ["body", "activations", 0], "alpha"),
    # Found by schemathesis once the schema typed parameters: a 500 (torch refused 1e308), and 24 GB for 2³⁰ segments.
    "a number torch cannot hold": (spec(activations=[{"name": "prelu", "init": 1e308}]), ["body", "activations", 0], "init"),
    "a module of unbounded size": (spec(activations=[{"name": "pwlu", "segments": 2**30}]), ["body", "activations", 0],
                                   "segments"),
    "not one of the choices": (spec(activations=[{"name": "gelu", "approximate": "tanh'"}]), ["body", "activations", 0],
                               "'none' or 'tanh'"),
    "text as an integer": (spec(activations=[{"name": "pwlu", "segments": "8"}]), ["body", "activations", 0], "segments"),
    "true as a number": (spec(activations=[{"name": "leaky_relu", "negative_slope": True}]), ["body", "activations", 0],
                         "negative_slope"),
    "too large": (spec(search={"trials_per_activation": 200}, training={"epochs": 500}, activations=["relu", "telu", "gelu"]),
                  ["body"], "study too large"),
}


@pytest.mark.parametrize("body, loc, message", BAD_SPECS.values(), ids=list(BAD_SPECS))
def test_bad_specs_answer_422_naming_the_field(api, body, loc, message):
    r = api.client.post(STUDIES, json=body, headers=api.admin)
    assert r.status_code == 422, r.text
    errors = r.json()["detail"]
    assert all(set(e) == {"loc", "msg", "type"} for e in errors)  # no echo of the input
    matching = [e for e in errors if e["loc"] == loc]
    assert matching, errors
    assert any(message in e["msg"] for e in matching), matching


def test_every_bad_field_is_reported_at_once(api):
    body = spec(activations=["nope"], dataset={"name": "imagenet"}, training={"epochs": 0}, extra=1)
    locs = [e["loc"] for e in api.client.post(STUDIES, json=body, headers=api.admin).json()["detail"]]
    assert ["body", "activations", 0] in locs and ["body", "dataset", "name"] in locs
    assert ["body", "training", "epochs"] in locs and ["body", "extra"] in locs


@pytest.mark.parametrize("content, content_type, loc_prefix", [
    (b"{not json", "application/json", ["body"]),
    (b"", "application/json", ["body"]),
    (b"[1, 2, 3]", "application/json", ["body"]),
    (b"null", "application/json", ["body"]),
    (b'"relu"', "application/json", ["body"]),
    (b'{"activations": ["relu"]', "application/json", ["body"]),
    (b"\xff\xfe\x00garbage", "application/json", ["body"]),
    (b'{"activations": ["relu"]}', "text/plain", ["body"]),
    (b"activations=relu", "application/x-www-form-urlencoded", ["body"]),
], ids=["broken-json", "empty", "array", "null", "string", "truncated", "binary", "text-plain", "form"])
def test_malformed_bodies_answer_422(api, content, content_type, loc_prefix):
    r = api.client.post(STUDIES, content=content, headers={**api.admin, "Content-Type": content_type})
    assert r.status_code == 422, r.text
    assert all(e["loc"][: len(loc_prefix)] == loc_prefix for e in r.json()["detail"])


@pytest.mark.parametrize("content", [
    b'{"activations": ["relu"], "training": {"epochs": 1, "epochs": 500}}',
    b'{"activations": ["relu"], "activations": ["telu"]}',
    b'{"activations": [{"name": "elu", "alpha": 1.0, "alpha": 2.0}]}',
], ids=["nested", "top", "in-a-list"])
def test_a_repeated_key_answers_422_naming_it(api, content):
    """JSON parsers keep the last of two equal keys: the study would run what its author did not read."""
    r = api.client.post(STUDIES, content=content, headers={**api.admin, "Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    (error,) = r.json()["detail"]
    assert error["loc"] == ["body"] and "appears twice" in error["msg"]
    assert json.loads(content.decode(), object_pairs_hook=lambda p: p)  # valid JSON otherwise


@pytest.mark.parametrize("content, says", [
    (b'{"activations": ["relu"], "seed": ' + b"9" * 5000 + b"}", "an integer of 5000 digits"),
    (b'{"activations": [{"name": "elu", "alpha": ' + b"[" * 5000 + b"]" * 5000 + b"}]}", "nested deeper than"),
    (b'{"activations": [{"name": "elu", "alpha": ' + b"[" * 40 + b"]" * 40 + b"}]}", "nested deeper than"),
], ids=["huge-integer", "very-deep", "deep"])
def test_limits_of_the_json_itself_answer_422_saying_which(api, content, says):
    """Python's parser answers these with a bare 400 (or takes them): say which limit, as for any field."""
    r = api.client.post(STUDIES, content=content, headers={**api.admin, "Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert any(e["loc"] == ["body"] and says in e["msg"] for e in r.json()["detail"]), r.text


@pytest.mark.parametrize("data_root", ["../../etc", "/", "/etc", "data", "{root}/../elsewhere", "{link}"])
def test_a_data_root_outside_the_configured_ones_answers_422(make_api, tmp_path, data_root):
    """Workers read (and may decompress files in) it: only folders the operator named."""
    root = tmp_path / "datasets"
    (root / "cifar").mkdir(parents=True)
    (root / "link").symlink_to("/etc")
    body = spec(dataset={"name": "mnist", "data_root": data_root.format(root=root, link=root / "link")}, model={"name": "cnn"})
    for allowed in ([], [root]):
        api = make_api(data_roots=allowed)
        r = api.client.post(STUDIES, json=body, headers=api.admin)
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0]["loc"] == ["body", "dataset", "data_root"]


def test_a_data_root_below_a_configured_one_is_taken(make_api, tmp_path):
    root = tmp_path / "datasets"
    (root / "cifar").mkdir(parents=True)
    api = make_api(data_roots=[root])
    _, headers = api.owner()  # a fresh owner: the admin's quota is shared with other tests' studies in the session database
    for data_root in (root, root / "cifar"):
        body = spec(dataset={"name": "mnist", "data_root": str(data_root)}, model={"name": "cnn"})
        assert api.client.post(STUDIES, json=body, headers=headers).status_code == 503  # valid; no Ray here


@pytest.mark.parametrize("content, loc", [
    (b'{"activations": ["relu"], "search": {"lr": {"low": 1e-4, "high": Infinity}}}', ["body", "search", "lr", "high"]),
    (b'{"activations": ["relu"], "training": {"momentum": NaN}}', ["body", "training", "momentum"]),
    (b'{"activations": ["relu"], "dataset": {"val_fraction": -Infinity}}', ["body", "dataset", "val_fraction"]),
], ids=["inf", "nan", "-inf"])
def test_non_finite_numbers_answer_422_and_store_nothing(api, content, loc):
    """JSON columns cannot hold them: they were stored as null, and the spec never re-read."""
    before = api.client.get(STUDIES, headers=api.admin).json()["count"]
    r = api.client.post(STUDIES, content=content, headers={**api.admin, "Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert any(e["loc"] == loc for e in r.json()["detail"]), r.json()
    assert api.client.get(STUDIES, headers=api.admin).json()["count"] == before


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 101}, {"limit": "ten"}, {"offset": -1}, {"status": "sleeping"}])
def test_bad_list_parameters_answer_422(api, params):
    r = api.client.get(STUDIES, params=params, headers=api.admin)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"][0] == "query"


# --- body size: 413 -------------------------------------------------------------------------------


def _padded(size: int) -> bytes:
    """A JSON spec body of exactly `size` bytes (the padding is in the name, which then fails validation)."""
    head, tail = b'{"activations": ["relu"], "name": "', b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def test_body_over_the_limit_answers_413(make_api):
    api = make_api(max_body_bytes=2048)
    r = api.client.post(STUDIES, content=_padded(2049), headers={**api.admin, "Content-Type": "application/json"})
    assert r.status_code == 413
    assert r.json()["detail"] == "request body over 2048 bytes"
    at_limit = api.client.post(STUDIES, content=_padded(2048), headers={**api.admin, "Content-Type": "application/json"})
    assert at_limit.status_code == 422  # read and validated: the name is too long


def test_chunked_body_over_the_limit_answers_413(make_api):
    api = make_api(max_body_bytes=2048)

    def chunks(body: bytes):  # a generator: sent chunked, without a Content-Length
        for i in range(0, len(body), 500):
            yield body[i:i + 500]

    headers = {**api.admin, "Content-Type": "application/json"}
    r = api.client.post(STUDIES, content=chunks(_padded(10_000)), headers=headers)
    assert r.status_code == 413
    small = api.client.post(STUDIES, content=chunks(json.dumps(spec(activations=["nope"])).encode()), headers=headers)
    assert small.status_code == 422  # under the limit, the body reaches the route intact
    assert small.json()["detail"][0]["loc"] == ["body", "activations", 0]


def test_413_comes_before_authentication(make_api):
    api = make_api(max_body_bytes=1024)
    assert api.client.post(STUDIES, content=_padded(5000), headers={"Content-Type": "application/json"}).status_code == 413


def test_default_body_limit_is_64_kib():
    assert Settings.model_fields["max_body_bytes"].default == 64 * 1024


# --- per-owner limit: 429 -------------------------------------------------------------------------


def test_over_the_per_owner_limit_answers_429(make_api):
    api = make_api(max_active_studies_per_owner=2)
    alice, alice_h = api.owner()
    bob, bob_h = api.owner()
    add_study(api.store, alice, status=StudyStatus.queued)
    add_study(api.store, alice, status=StudyStatus.running)
    for done in ("succeeded", "failed", "cancelled"):  # finished studies do not count
        add_study(api.store, bob, status=done)
    r = api.client.post(STUDIES, json=spec(), headers=alice_h)
    assert r.status_code == 429
    assert r.json()["detail"] == "at most 2 queued or running studies per owner"
    assert api.client.get(STUDIES, headers=alice_h).json()["count"] == 2  # nothing was stored
    # Bob is under the limit: his study is stored, then refused by the (absent) cluster.
    assert api.client.post(STUDIES, json=spec(), headers=bob_h).status_code == 503


def test_a_zero_limit_refuses_every_submission(make_api):
    api = make_api(max_active_studies_per_owner=0)
    assert api.client.post(STUDIES, json=spec(), headers=api.admin).status_code == 429


# --- no cluster: 503, and the study is recorded as failed -----------------------------------------


def test_submission_without_a_ray_cluster_answers_503_and_records_why(api):
    owner, headers = api.owner()
    r = api.client.post(STUDIES, json=spec(), headers=headers)
    assert r.status_code == 503
    assert "no Ray cluster configured" in r.json()["detail"]
    [study] = api.client.get(STUDIES, headers=headers).json()["data"]
    assert study["status"] == "failed" and "no Ray cluster configured" in study["error"]
    assert study["owner"] == owner and study["name"] == "tiny" and study["finished_at"]


# --- reading, results, cancel: 200 / 404 / 409 ----------------------------------------------------


def test_body_that_is_not_utf8_answers_400(api):
    r = api.client.post(STUDIES, content=b")\x80f\x14\xff", headers={**api.admin, "Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json() == {"detail": "There was an error parsing the body"}


def test_study_record_shape_and_links(api):
    owner, headers = api.owner()
    study_id = add_study(api.store, owner, name="shape")
    body = api.client.get(_study_url(study_id), headers=headers).json()
    # Timestamps carry their zone (UTC) on both databases.
    assert datetime.fromisoformat(body["created_at"]).utcoffset() == timedelta(0)
    assert body["id"] == study_id and body["owner"] == owner and body["name"] == "shape"
    assert body["status"] == "queued" and body["attempts"] == 0 and body["created_at"]
    assert body["links"]["self"].endswith(_study_url(study_id))
    assert body["links"]["results"].endswith(_study_url(study_id, "/results"))
    assert body["links"]["cancel"].endswith(_study_url(study_id, "/cancel"))


def test_links_come_from_configuration_never_from_the_host_header(make_api):
    for public_url, expected in ((None, ""), ("https://studies.example.org/", "https://studies.example.org")):
        api = make_api(public_url=public_url)
        owner, headers = api.owner()
        study_id = add_study(api.store, owner)
        for host in ("evil.example", "127.0.0.1:8000"):
            links = api.client.get(_study_url(study_id), headers={**headers, "Host": host}).json()["links"]
            assert links["self"] == expected + _study_url(study_id)
            assert all(host not in (link or "") for link in links.values())


def test_results_of_a_finished_study(api):
    owner, headers = api.owner()
    results = results_for(["telu", "relu", "pwlu"], baseline="relu")
    results["mlflow"] = {"tracking_uri": "http://mlflow", "experiment_id": "1", "parent_run_id": "1",
                         "parent_run_url": "http://mlflow/#/runs/1", "activation_runs": {}}
    study_id = add_study(api.store, owner, status=StudyStatus.succeeded, results=results)
    r = api.client.get(_study_url(study_id, "/results"), headers=headers)
    assert r.status_code == 200
    body = r.json()
    assert body["id"] == study_id and body["status"] == "succeeded"
    assert body["ranking"] == ["telu", "relu", "pwlu"] and body["best_activation"] == "telu"
    assert body["baseline"] == "relu" and set(body["activations"]) == {"telu", "relu", "pwlu"}
    assert body["activations"]["telu"]["test_acc"]["ci95"] == [0.9, 0.9]
    assert body["mlflow"]["parent_run_url"] == "http://mlflow/#/runs/1"


@pytest.mark.parametrize("status", ["queued", "running", "failed", "cancelled"])
def test_results_of_an_unfinished_study_answer_409(api, status):
    owner, headers = api.owner()
    study_id = add_study(api.store, owner, status=status)
    r = api.client.get(_study_url(study_id, "/results"), headers=headers)
    assert r.status_code == 409
    assert r.json()["detail"] == f"study {study_id} has no results yet (status {status})"


@pytest.mark.parametrize("status", ["succeeded", "failed", "cancelled"])
def test_cancel_of_a_finished_study_answers_409(api, status):
    owner, headers = api.owner()
    study_id = add_study(api.store, owner, status=status)
    r = api.client.post(_study_url(study_id, "/cancel"), headers=headers)
    assert r.status_code == 409
    assert api.store.get(study_id).status == status


def test_cancel_of_a_queued_study(api):
    owner, headers = api.owner()
    study_id = add_study(api.store, owner)
    r = api.client.post(_study_url(study_id, "/cancel"), headers=headers)
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "cancelled" and body["error"] == f"cancelled by {owner}" and body["finished_at"]
    assert api.client.post(_study_url(study_id, "/cancel"), headers=headers).status_code == 409


@pytest.mark.parametrize("study_id", ["ffffffffffff", "x" * 33, "x" * 2000, "a%00b", "%F0%9F%92%A5", "a%20b", "'; drop table studies; --"],
                         ids=["unknown", "33-chars", "2000-chars", "nul", "emoji", "space", "sql"])
def test_unknown_or_malformed_ids_answer_404(api, study_id):
    for suffix, method in (("", "GET"), ("/results", "GET"), ("/cancel", "POST")):
        r = api.client.request(method, f"{STUDIES}/{study_id}{suffix}", headers=api.admin)
        assert r.status_code == 404, (study_id, suffix, r.text)


def test_reading_an_active_study_with_the_cluster_away_leaves_it_as_it_is(api):
    owner, headers = api.owner()
    study_id = add_study(api.store, owner, status=StudyStatus.running, ray_job_id="actstudy-gone-1", attempts=1)
    body = api.client.get(_study_url(study_id), headers=headers).json()
    assert body["status"] == "running" and body["ray_job_id"] == "actstudy-gone-1"


@pytest.mark.parametrize("method, path, allowed", [
    ("DELETE", STUDIES, "GET, HEAD, POST"),
    ("PUT", _study_url("0123456789ab"), "GET, HEAD"),
    ("GET", _study_url("0123456789ab", "/cancel"), "POST"),
])
def test_an_unsupported_method_answers_405_naming_every_allowed_one(api, method, path, allowed):
    r = api.client.request(method, path, headers=api.admin)
    assert r.status_code == 405
    assert r.headers["allow"] == allowed


# --- activations, health --------------------------------------------------------------------------


def test_activations_lists_the_registry(api):
    r = api.client.get("/api/v1/activations")
    assert r.status_code == 200
    by_name = {a["name"]: a for a in r.json()}
    assert {"relu", "telu", "pwlu", "lslu", "gelu"} <= set(by_name)
    assert by_name["pwlu"]["learnable"] and by_name["lslu"]["learnable"] and not by_name["relu"]["learnable"]
    assert "segments" in by_name["pwlu"]["parameters"]
    assert all(a["formula"] and a["source"] for a in by_name.values())


def test_activations_document_the_formula_language(api):
    formula = api.client.get("/api/v1/activations").json()[-1]
    assert (formula["name"], formula["kind"]) == ("formula", "formula")
    language = formula["language"]
    assert "where(a < b, c, d)" in language["functions"] and language["limits"]["characters"] == 500


def test_a_formula_is_checked_over_rest(api):
    _, headers = api.owner()
    r = api.client.post("/api/v1/activations/check", json={"expr": "x * tanh(exp(x))"}, headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert not body["ok"] and "x ≥ 88.72" in body["message"] and body["findings"][0]["reason"] == "exp(x) overflows to inf"
    r = api.client.post("/api/v1/activations/check", headers=headers,
                        json={"expr": "x*sigmoid(beta*x)", "params": {"beta": {"init": 1.0, "learnable": True, "per_channel": True}}})
    assert r.json()["ok"] and r.json()["expr"] == "x * sigmoid(beta * x)" and r.json()["learnable"] == ["beta"]
    assert r.json()["curve"]["y"][-1] == pytest.approx(6 / (1 + math.exp(-6)))
    assert api.client.post("/api/v1/activations/check", json={"expr": "x"}).status_code == 401


@pytest.mark.parametrize("body, loc, says", [
    ({"expr": "x.__class__"}, ["body", "expr"], "attribute access not allowed"),
    ({"expr": "x", "params": {"a": "1"}}, ["body", "params", "a"], "expected a number"),
    ({"expr": "x * 2", "label": ""}, ["body", "label"], "expected 1 to 64"),
    ({"expr": "x" * 501}, ["body", "expr"], "at most 500 characters"),
    ({"expr": "x", "code": "import os"}, ["body", "code"], "Extra inputs are not permitted"),
])
def test_a_formula_that_is_not_one_answers_422_naming_the_field(api, body, loc, says):
    _, headers = api.owner()
    r = api.client.post("/api/v1/activations/check", json=body, headers=headers)
    assert r.status_code == 422, r.text
    assert any(e["loc"] == loc and says in e["msg"] for e in r.json()["detail"]), r.json()


HOSTILE_FORMULAS = ["__import__('os')", "x.__class__", "(lambda: 0)()", '"x"', "9**9**9", "(" * 300 + "x" + ")" * 300,
                    "+".join(["x"] * 20_000), "frobnicate(x)", "x * gamma", "", "x * tanh(exp(x))"]


@pytest.mark.parametrize("expr", HOSTILE_FORMULAS, ids=["import", "attribute", "lambda", "string", "power tower", "300 parens",
                                                         "20000 terms", "unknown function", "undeclared name", "empty", "naive telu"])
def test_a_study_with_a_hostile_or_careless_formula_answers_422_and_stores_nothing(api, expr):
    owner, headers = api.owner()
    r = api.client.post(STUDIES, json=spec(activations=["relu", {"name": "formula", "expr": expr}]), headers=headers)
    assert r.status_code == 422, r.text
    (error,) = r.json()["detail"]
    assert error["loc"] == ["body", "activations", 1] and error["msg"].startswith("Value error, expr:"), error
    assert api.client.get(STUDIES, headers=headers).json()["count"] == 0


def test_healthz(api):
    assert api.client.get("/healthz").json() == {"status": "ok"}


def test_readyz_is_503_without_ray_and_mlflow(api):
    r = api.client.get("/readyz")
    assert r.status_code == 503
    assert r.json() == {"status": "not ready", "checks": {"database": "ok", "ray": "unreachable", "mlflow": "unreachable"}}


def test_readyz_is_503_when_mlflow_does_not_answer(make_api):
    from studies.local import free_port

    api = make_api(mlflow_uri=f"http://127.0.0.1:{free_port()}")
    r = api.client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["checks"]["mlflow"].startswith("unreachable")


# --- settings -------------------------------------------------------------------------------------


def test_no_admin_token_is_built_in(make_api, monkeypatch):
    monkeypatch.delenv("ACTSTUDY_ADMIN_TOKEN", raising=False)
    assert Settings().admin_token is None
    api = make_api(admin_token=None)  # an app without one: nobody is admin
    for guess in ("dev-admin-token", "None", "null", ""):
        assert api.client.get(STUDIES, headers={"Authorization": f"Bearer {guess}"}).status_code == 401


def test_serve_makes_the_admin_token_once_and_keeps_it_owner_only(tmp_path):
    from service.auth import admin_token_in

    token, path, made = admin_token_in(tmp_path)
    assert made and len(token) >= 40 and path.read_text().strip() == token
    assert path.stat().st_mode & 0o777 == 0o600
    assert admin_token_in(tmp_path) == (token, path, False)  # the same one at every later start


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.org"])
def test_serve_refuses_to_listen_beyond_loopback_without_a_configured_token(host, tmp_path, monkeypatch):
    from service.serve import serve

    monkeypatch.delenv("ACTSTUDY_ADMIN_TOKEN", raising=False)
    monkeypatch.setenv("ACTSTUDY_DATA_DIR", str(tmp_path / "data"))
    said = []
    assert serve(host=host, port=0, data_dir=str(tmp_path / "data"), echo=said.append) == 2
    assert "ACTSTUDY_ADMIN_TOKEN" in said[0] and not (tmp_path / "data").exists()  # nothing started or written


def test_settings_refuse_a_missing_admin_token_outside_development(monkeypatch):
    with pytest.raises(ValidationError, match="ACTSTUDY_ADMIN_TOKEN"):
        Settings(environment="production")
    monkeypatch.setenv("ACTSTUDY_ENVIRONMENT", "production")
    monkeypatch.delenv("ACTSTUDY_ADMIN_TOKEN", raising=False)
    with pytest.raises(ValidationError, match="ACTSTUDY_ADMIN_TOKEN"):
        Settings()
    monkeypatch.setenv("ACTSTUDY_ADMIN_TOKEN", "a-real-secret")
    assert Settings().admin_token == "a-real-secret"


def test_settings_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ACTSTUDY_RAY_JOBS_URL", "http://head:8265")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    monkeypatch.setenv("ACTSTUDY_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("ACTSTUDY_DATABASE_URL", raising=False)
    s = Settings()
    assert (s.ray_jobs_url, s.mlflow_uri) == ("http://head:8265", "http://mlflow:5000")
    assert s.db_url == f"sqlite:///{tmp_path.resolve() / 'actstudy.db'}"
    # Field names work as well as the variables' names (tests and embedders build Settings this way).
    s = Settings(ray_jobs_url="http://other:8265", mlflow_uri="http://other:5000")
    assert (s.ray_jobs_url, s.mlflow_uri) == ("http://other:8265", "http://other:5000")


# --- with a real Ray head: launch, cancel, secrets -------------------------------------------------


def _jobs_client(ray_head):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(ray_head.dashboard_url, headers={"Authorization": f"Bearer {ray_head.token}"})


def _wait_job(client, job_id: str, timeout: float = 60):
    from ray.job_submission import JobStatus

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = client.get_job_info(job_id)
        if info.status in (JobStatus.STOPPED, JobStatus.SUCCEEDED, JobStatus.FAILED):
            return info
        time.sleep(0.5)
    raise AssertionError(f"Ray job {job_id} still {info.status} after {timeout} s")


@pytest.mark.slow
def test_submit_launches_a_driver_job_and_cancel_stops_it(make_api, ray_jobs):
    api = make_api(ray_jobs_url=ray_jobs.dashboard_url, ray_auth_token=ray_jobs.token)
    owner, headers = api.owner()
    r = api.client.post(STUDIES, json=spec(name="launch"), headers=headers)
    assert r.status_code == 201, r.text
    study = r.json()
    assert study["status"] == "queued" and study["owner"] == owner and study["attempts"] == 1
    assert study["ray_job_id"] == f"actstudy-{study['id']}-1"

    cancelled = api.client.post(_study_url(study["id"], "/cancel"), headers=headers)
    # `cancelling` until its driver is gone (and its MLflow runs ended), then `cancelled`.
    assert cancelled.status_code == 200 and cancelled.json()["status"] in ("cancelling", "cancelled")

    jobs = _jobs_client(ray_jobs)
    info = _wait_job(jobs, study["ray_job_id"])
    assert info.entrypoint.endswith(f"-m studies.driver {study['id']}")
    assert info.metadata == {"study_id": study["id"], "owner": owner, "attempt": "1"}
    assert info.status in ("STOPPED", "SUCCEEDED")  # stopped, or the driver saw the cancel first and exited
    reconcile_all(api.store, api.client.app.state.jobs, max_attempts=3)  # this app's reconciler is off: a pass by hand
    after = api.client.get(_study_url(study["id"]), headers=headers).json()
    assert after["status"] == "cancelled" and after["error"] == f"cancelled by {owner}"


@pytest.mark.slow
@pytest.mark.parametrize("resources, field", [({"cpus_per_trial": 64}, "cpus_per_trial"), ({"gpus_per_trial": 2}, "gpus_per_trial")])
def test_resources_no_node_has_answer_422_naming_them(make_api, ray_jobs, resources, field):
    """Not 201 and then `running` forever with no progress, holding a quota slot."""
    api = make_api(ray_jobs_url=ray_jobs.dashboard_url, ray_auth_token=ray_jobs.token)
    owner, headers = api.owner()
    r = api.client.post(STUDIES, json=spec(resources=resources), headers=headers)
    assert r.status_code == 422, r.text
    (error,) = r.json()["detail"]
    assert error["loc"] == ["body", "resources", field] and "largest node of the cluster has" in error["msg"]
    assert api.client.get(STUDIES, headers=headers).json()["count"] == 0  # nothing stored, no slot taken


@pytest.mark.slow
def test_a_cluster_that_refuses_the_token_answers_503(make_api, ray_head):
    api = make_api(ray_jobs_url=ray_head.dashboard_url, ray_auth_token="wrong-" + ray_head.token[:8])
    owner, headers = api.owner()
    r = api.client.post(STUDIES, json=spec(), headers=headers)
    assert r.status_code == 503
    assert "stored but not started" in r.json()["detail"]
    assert api.settings.ray_auth_token not in r.text
    [study] = api.client.get(STUDIES, headers=headers).json()["data"]
    assert study["status"] == "failed"
    assert api.settings.ray_auth_token not in study["error"]


@pytest.mark.slow
def test_readyz_is_200_with_everything_up(make_api, ray_head, mlflow_server):
    api = make_api(ray_jobs_url=ray_head.dashboard_url, ray_auth_token=ray_head.token, mlflow_uri=mlflow_server.url)
    r = api.client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ready", "checks": {"database": "ok", "ray": "ok", "mlflow": "ok"}}


@pytest.mark.slow
def test_secrets_never_appear_in_answers_or_logs(make_api, db_url, ray_jobs, caplog):
    from sqlalchemy.engine import make_url

    password = "pw-" + "S3cr3t" * 3
    url = db_url
    if db_url.startswith("postgresql"):  # the test server trusts local connections, so any password works
        url = make_url(db_url).set(password=password).render_as_string(hide_password=False)
    api = make_api(database_url=url, ray_jobs_url=ray_jobs.dashboard_url, ray_auth_token=ray_jobs.token,
                   max_active_studies_per_owner=1)
    owner, headers = api.owner()
    token = headers["Authorization"].removeprefix("Bearer ")
    secrets_ = [ray_jobs.token, api.settings.admin_token, token, password]

    caplog.set_level(logging.DEBUG)
    answers = []
    c = api.client
    created = c.post(STUDIES, json=spec(name="secrets"), headers=headers)
    assert created.status_code == 201, created.text
    study_id = created.json()["id"]
    answers += [created, c.post(STUDIES, json=spec(), headers=headers)]  # 429
    answers += [c.get(STUDIES, headers=headers), c.get(STUDIES, headers=api.admin), c.get(_study_url(study_id), headers=headers)]
    answers += [c.get(_study_url(study_id, "/results"), headers=headers), c.post(_study_url(study_id, "/cancel"), headers=headers)]
    answers += [c.get("/readyz"), c.get("/healthz"), c.get("/openapi.json"), c.get("/api/v1/activations")]
    answers += [c.post(STUDIES, json=spec(activations=["nope"]), headers=headers)]
    answers += [c.get(STUDIES, headers=auth(token + "x")), c.get(_study_url("nope"), headers=headers)]
    answers += [c.post(STUDIES, content=b"x" * 70_000, headers=headers)]
    _wait_job(_jobs_client(ray_jobs), created.json()["ray_job_id"])

    statuses = [r.status_code for r in answers]
    assert statuses == [201, 429, 200, 200, 200, 409, 200, 503, 200, 200, 200, 422, 401, 404, 413], statuses
    for r in answers:
        for secret in secrets_:
            assert secret not in r.text, (r.request.method, r.request.url.path, r.status_code)
            assert all(secret not in v for v in r.headers.values())
    for secret in secrets_:
        assert secret not in caplog.text
    # Ray writes a job's runtime env to its logs: the driver gets the database URL by a file only it reads.
    env = _jobs_client(ray_jobs).get_job_info(created.json()["ray_job_id"]).runtime_env["env_vars"]
    assert "ACTSTUDY_DATABASE_URL" not in env and all(password not in v for v in env.values())
    url_file = Path(env["ACTSTUDY_DATABASE_URL_FILE"])
    assert url_file.read_text() == url and url_file.stat().st_mode & 0o777 == 0o600


def test_a_body_that_stops_arriving_answers_408_instead_of_holding_a_worker(make_api):
    """Called at the ASGI level: the first chunk arrives, the rest never does."""
    import asyncio

    api = make_api(body_timeout_s=0.5)
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": STUDIES, "raw_path": STUDIES.encode(), "query_string": b"", "root_path": "", "server": ("t", 80),
             "client": ("c", 1), "headers": [(b"content-type", b"application/json"), (b"content-length", b"100"),
                                             (b"authorization", f"Bearer {api.settings.admin_token}".encode())]}
    chunks = [{"type": "http.request", "body": b'{"activations": ', "more_body": True}]
    sent = []

    async def receive():
        if chunks:
            return chunks.pop()
        await asyncio.sleep(3600)

    async def send(message):
        sent.append(message)

    async def call():
        start = asyncio.get_running_loop().time()
        await api.client.app(scope, receive, send)
        return asyncio.get_running_loop().time() - start

    took = asyncio.run(asyncio.wait_for(call(), 30))
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 408
    assert b"not received within 0.5 s" in sent[1]["body"] and took < 30
