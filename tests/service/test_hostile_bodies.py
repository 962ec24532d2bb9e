"""Hand-written hostile submissions, generated from a fixed seed: 1,200 bodies that mix what attackers and
careless users send (quotes and filter syntax in every string, deep nesting, huge and non-finite numbers,
repeated keys, wrong types, odd Unicode, oversized lists). None may get a 5xx; each gets a clear 4xx.

    .venv/bin/python -m pytest tests/service/test_hostile_bodies.py -q      # ~10 s
"""

from __future__ import annotations

import json
import random

import pytest

from tests.utils.factories import spec

N_BODIES = 1200
STRINGS = ["x' or '1'='1", "relu\\u0000", "../../etc/passwd", "tags.`x` = 'y'", "%s%s%n", "𝕣𝕖𝕝𝕦", "", " " * 300,
           "a" * 5000, "<script>alert(1)</script>", "${jndi:ldap://x}", "NaN", "Infinity", "1e309", "-0", "true", "null"]
NUMBERS = ["1e309", "-1e309", "NaN", "Infinity", "-Infinity", "1" * 400, "0.0000000000000000000000000001", "-1", "0",
           "9" * 30, "1.5", "true", "[]", "{}", '"3"']
PATHS = [("name",), ("dataset", "name"), ("dataset", "data_root"), ("dataset", "val_fraction"), ("model", "name"),
         ("model", "hidden"), ("search", "trials_per_activation"), ("search", "lr", "low"), ("search", "lr", "high"),
         ("search", "sampler"), ("training", "epochs"), ("training", "batch_size"), ("training", "momentum"),
         ("training", "label_smoothing"), ("confirm", "seeds"), ("confirm", "baseline"), ("resources", "cpus_per_trial"),
         ("resources", "gpus_per_trial"), ("seed",), ("activations",)]


def _literal(rng: random.Random) -> str:
    """A JSON value as text: strings, numbers no parser agrees on, nesting, structures of the wrong kind."""
    kind = rng.randrange(6)
    if kind == 0:
        return json.dumps(rng.choice(STRINGS))
    if kind == 1:
        return rng.choice(NUMBERS)
    if kind == 2:
        depth = rng.choice([50, 300, 900])
        return "[" * depth + "]" * depth
    if kind == 3:
        return json.dumps([rng.choice(STRINGS)] * rng.choice([1, 50, 2000]))
    if kind == 4:
        return json.dumps({rng.choice(STRINGS): rng.choice(STRINGS)})
    return json.dumps({"name": rng.choice(["relu", "pwlu", "elu", "gelu", "nope"]), rng.choice(["alpha", "segments", "approximate", "x"]):
                       rng.choice([1, -1, 0.5, "1", True, None, [1], {"a": 1}, "tanh'", json.loads("[" * 300 + "]" * 300)])})


def _body(rng: random.Random) -> bytes:
    """A valid spec with one to three fields replaced by hostile values (as raw JSON text), sometimes a key twice."""
    doc = spec(name="hostile")
    marks = {}
    for i in range(rng.randint(1, 3)):
        path = rng.choice(PATHS)
        where = doc
        for key in path[:-1]:
            where = where.setdefault(key, {}) if isinstance(where.get(key, {}), dict) else {}
        where[path[-1]] = f"@@{i}@@"
        marks[f'"@@{i}@@"'] = _literal(rng)
    if path[-1] == "activations" or rng.random() < 0.2:
        doc.setdefault("activations", ["relu"])
    text = json.dumps(doc)
    for mark, value in marks.items():
        text = text.replace(mark, value)
    if rng.random() < 0.15:  # a repeated key
        text = text.replace('{"name": "hostile"', '{"name": "hostile", "name": "other"', 1)
    return text.encode()


@pytest.fixture
def hostile_api(make_api):
    return make_api(max_active_studies_per_owner=0, max_body_bytes=64 * 1024)


def test_hostile_bodies_never_get_a_server_error(hostile_api):
    rng = random.Random(20261201)
    api = hostile_api
    seen: dict[int, int] = {}
    for i in range(N_BODIES):
        body = _body(rng)
        r = api.client.post("/api/v1/studies", content=body, headers={**api.admin, "Content-Type": "application/json"})
        assert r.status_code < 500, (i, body[:300], r.status_code, r.text[:300])
        assert r.status_code in (400, 413, 422, 429), (i, body[:300], r.status_code, r.text[:300])
        if r.status_code == 422:  # every refusal names where, and echoes no input back
            assert all(set(e) == {"loc", "msg", "type"} and e["loc"] for e in r.json()["detail"]), r.text[:300]
        seen[r.status_code] = seen.get(r.status_code, 0) + 1
    assert sum(seen.values()) == N_BODIES and seen.get(422, 0) > N_BODIES // 2, seen
