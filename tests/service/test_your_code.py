"""Your model and your data at the API: user code off by default (a 422 naming the setting), uploads of code checked
(size, file count, paths, links) and kept by content, data paths confined to the operator's folders, a model over
the parameter cap refused at submission without building it."""

from __future__ import annotations

import hashlib
import io
import stat
import zipfile

import numpy as np
import pytest

from service.code import MAX_FILES, code_dir, pack_folder
from tests.utils.factories import spec

STUDIES, CODE = "/api/v1/studies", "/api/v1/code"
ZIP = {"Content-Type": "application/zip"}
LIMIT = 300_000


def zipped(files: dict[str, bytes], links: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, "/etc/passwd")
    return buffer.getvalue()


MODEL_CODE = b"from torch import nn\n\ndef build(input_shape, num_classes):\n    return nn.Sequential(nn.Linear(40, 8), nn.ReLU(), nn.Linear(8, num_classes))\n"


def test_user_code_is_refused_by_default_naming_the_setting(api):
    r = api.client.post(CODE, content=zipped({"mine/net.py": MODEL_CODE}), headers={**api.admin, **ZIP})
    assert r.status_code == 422 and "ACTSTUDY_ALLOW_USER_CODE" in r.text, r.text
    body = spec(model={"source": "import", "name": "mine.net:build"})
    r = api.client.post(STUDIES, json=body, headers=api.admin)
    assert r.status_code == 422, r.text
    assert any(e["loc"] == ["body", "model", "name"] and "ACTSTUDY_ALLOW_USER_CODE" in e["msg"] for e in r.json()["detail"])
    r = api.client.post(STUDIES, json=spec(code="0" * 64), headers=api.admin)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "code"], r.text
    assert not (api.settings.data_dir / "code").exists()


def test_an_upload_is_kept_once_by_its_content_and_a_study_may_run_in_it(make_api):
    api = make_api(allow_user_code=True)
    archive = zipped({"mine/__init__.py": b"", "mine/net.py": MODEL_CODE})
    first = api.client.post(CODE, content=archive, headers={**api.admin, **ZIP})
    again = api.client.post(CODE, content=archive, headers={**api.admin, **ZIP})
    assert first.status_code == again.status_code == 201, first.text
    sha = hashlib.sha256(archive).hexdigest()
    assert first.json() == again.json() == {"code": sha, "files": 2, "bytes": len(MODEL_CODE)}
    folder = code_dir(api.settings.data_dir, sha)
    assert (folder / "mine" / "net.py").read_bytes() == MODEL_CODE
    assert [p.name for p in folder.parent.iterdir()] == [sha]  # no temporary folder left behind
    _, headers = api.owner()
    body = spec(code=sha, model={"source": "import", "name": "mine.net:build"})
    assert api.client.post(STUDIES, json=body, headers=headers).status_code == 503  # valid (the driver builds it); no Ray here
    r = api.client.post(STUDIES, json={**body, "code": "f" * 64}, headers=headers)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "code"] and "upload" in r.text


@pytest.mark.parametrize(("archive", "says"), [
    (zipped({"../evil.py": b"x"}), "points outside"),
    (zipped({"/etc/cron.d/evil": b"x"}), "points outside"),
    (zipped({"ok.py": b"x"}, links=("link",)), "is a link"),
    (zipped({f"f{i}.py": b"" for i in range(MAX_FILES + 1)}), "files, above the limit"),
    (zipped({}), "no files"),
    (b"PK\x03\x04 not really a zip", "not a zip archive"),
    (zipped({"big.bin": b"\0" * (8 * LIMIT + 1)}), "unpacks to"),  # a zip bomb, in small: 2.4 MB from 2.4 kB
])
def test_hostile_archives_are_refused_and_nothing_is_written(make_api, archive, says):
    api = make_api(allow_user_code=True, max_code_bytes=LIMIT)
    r = api.client.post(CODE, content=archive, headers={**api.admin, **ZIP})
    assert r.status_code == 422 and says in r.text, r.text
    folder = api.settings.data_dir / "code"
    assert not folder.exists() or not any(folder.iterdir())


def test_an_archive_over_the_limit_answers_413(make_api):
    api = make_api(allow_user_code=True, max_code_bytes=1000)
    r = api.client.post(CODE, content=np.random.default_rng(0).bytes(5000), headers={**api.admin, **ZIP})
    assert r.status_code == 413 and "1000 bytes" in r.text


def test_pack_folder_leaves_out_caches_and_is_the_same_for_the_same_files(tmp_path):
    (tmp_path / "mine" / "__pycache__").mkdir(parents=True)
    (tmp_path / "mine" / "net.py").write_bytes(MODEL_CODE)
    (tmp_path / "mine" / "__pycache__" / "net.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ref")
    first = pack_folder(tmp_path, 10**6)
    assert zipfile.ZipFile(io.BytesIO(first)).namelist() == ["mine/net.py"]
    (tmp_path / "mine" / "net.py").touch()  # a newer mtime: the same archive, so the same sha256 on the service
    assert pack_folder(tmp_path, 10**6) == first


def test_a_model_over_the_parameter_cap_is_refused_at_submission(api, monkeypatch):
    monkeypatch.setenv("ACTSTUDY_MAX_MODEL_PARAMETERS", "1000000")
    body = spec(dataset={"name": "cifar10"}, model={"source": "timm", "name": "resnet50"})  # 23.5 M parameters
    r = api.client.post(STUDIES, json=body, headers=api.admin)
    assert r.status_code == 422, r.text
    assert "ACTSTUDY_MAX_MODEL_PARAMETERS" in r.text and "23,528,522 parameters" in r.text


@pytest.mark.parametrize("where", ["outside", "link", "relative up"])
def test_a_dataset_path_outside_the_configured_roots_answers_422(make_api, tmp_path, where):
    root, elsewhere = tmp_path / "datasets", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    np.savez(elsewhere / "toy.npz", x_train=np.zeros((4, 3)), y_train=np.zeros(4, int), x_test=np.zeros((2, 3)), y_test=np.zeros(2, int))
    (root / "link").symlink_to(elsewhere)
    path = {"outside": str(elsewhere / "toy.npz"), "link": str(root / "link" / "toy.npz"), "relative up": "../elsewhere/toy.npz"}[where]
    api = make_api(data_roots=[root])
    r = api.client.post(STUDIES, json=spec(dataset={"source": "file", "path": path}), headers=api.admin)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "dataset", "path"]


def toy_images(root, size: int) -> None:
    """`root/toy.npz`: 40 training and 8 test images, 3 × size × size, 3 classes."""
    root.mkdir()
    rng = np.random.default_rng(0)
    np.savez(root / "toy.npz", x_train=rng.normal(size=(40, 3, size, size)).astype(np.float32), y_train=rng.integers(0, 3, 40),
             x_test=rng.normal(size=(8, 3, size, size)).astype(np.float32), y_test=rng.integers(0, 3, 8))


def test_a_dataset_below_a_configured_root_is_read_and_checked(make_api, tmp_path):
    root = tmp_path / "datasets"
    toy_images(root, 8)
    api = make_api(data_roots=[root])
    _, headers = api.owner()
    ok = spec(dataset={"source": "file", "path": str(root / "toy.npz")}, model={"name": "cnn"})
    assert api.client.post(STUDIES, json=ok, headers=headers).status_code == 503  # valid; no Ray here
    flat = spec(dataset={"source": "file", "path": str(root / "toy.npz")}, model={"name": "cnn1d"})
    r = api.client.post(STUDIES, json=flat, headers=headers)
    assert r.status_code == 422 and "is for sequences" in r.text, r.text


def test_validate_checks_a_spec_and_reports_the_swap_without_storing_it(make_api, tmp_path):
    root = tmp_path / "datasets"
    toy_images(root, 32)
    api = make_api(data_roots=[root])
    _, headers = api.owner()
    body = spec(dataset={"source": "file", "path": str(root / "toy.npz")},
                model={"source": "timm", "name": "resnet18", "kwargs": {"layers": [1, 1, 1, 1], "channels": [8, 16, 32, 64]}})
    r = api.client.post("/api/v1/specs/validate", json=body, headers=headers)
    assert r.status_code == 200, r.text
    checked = r.json()
    assert checked["dataset"] == {"input_shape": [3, 32, 32], "num_classes": 3, "train_samples": 40, "test_samples": 8,
                                  "bytes": 48 * 3 * 32 * 32 * 4, "streamed": False}
    assert checked["model_report"]["coverage"] == "9 of 9 activation calls swapped" and len(checked["model_report"]["sites"]) == 9
    assert checked["spec"]["dataset"]["name"] == "toy" and checked["spec"]["training"]["epochs"] == 1
    assert api.client.get(STUDIES, headers=headers).json()["count"] == 0  # nothing stored
    bad = spec(dataset={"source": "file", "path": str(root / "toy.npz")}, model={"source": "timm", "name": "resnet18", "kwargs": {"depth": 3}})
    r = api.client.post("/api/v1/specs/validate", json=bad, headers=headers)
    assert r.status_code == 422 and "does not take these arguments" in r.text, r.text
