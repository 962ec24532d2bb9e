"""Your code on the cluster: a folder, uploaded as a zip archive, kept under `<data dir>/code/<sha256>/` and given to
a study's driver (and so to its trials) as the Ray job's `working_dir` — every attempt of the study, relaunched
drivers included, gets the same files. Content-addressed: the same archive uploaded twice is kept once.

Limits (Settings): the archive's size (`max_code_bytes`), its unpacked size (8× that) and its file count
(`MAX_FILES`); entries with absolute paths, `..`, or links are refused, nothing is written outside the folder.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

MAX_FILES = 2000
UNPACKED_RATIO = 8
CLIENT_MAX_BYTES = 2**30  # what `--code` packs at most; the service's own limit answers 413 above its own
SKIPPED = ("__pycache__", ".git", ".venv", ".mypy_cache", ".pytest_cache")


class CodeError(ValueError):
    """An archive that is not stored: why, in words for the uploader."""


@dataclass(frozen=True)
class StoredCode:
    sha256: str
    files: int
    bytes: int


def code_dir(data_dir: str | os.PathLike, sha256: str) -> Path:
    return Path(data_dir).resolve() / "code" / sha256


def store_archive(data_dir: str | os.PathLike, body: bytes, max_bytes: int) -> StoredCode:
    """Check and unpack a zip archive; its sha256 names the folder (kept if already there)."""
    if len(body) > max_bytes:
        raise CodeError(f"the archive is {len(body):,} bytes, above the limit of {max_bytes:,} (ACTSTUDY_MAX_CODE_BYTES)")
    try:
        archive = zipfile.ZipFile(io.BytesIO(body))
        entries = archive.infolist()
    except zipfile.BadZipFile:
        raise CodeError("the body is not a zip archive") from None
    files = [e for e in entries if not e.is_dir()]
    if not files:
        raise CodeError("the archive holds no files")
    if len(files) > MAX_FILES:
        raise CodeError(f"the archive holds {len(files)} files, above the limit of {MAX_FILES}")
    unpacked = sum(e.file_size for e in files)
    if unpacked > UNPACKED_RATIO * max_bytes:
        raise CodeError(f"the archive unpacks to {unpacked:,} bytes, above the limit of {UNPACKED_RATIO * max_bytes:,}")
    for e in entries:
        path = PurePosixPath(e.filename)
        if path.is_absolute() or ".." in path.parts or "\\" in e.filename:
            raise CodeError(f"the archive's entry {e.filename!r} points outside its folder")
        if stat.S_ISLNK(e.external_attr >> 16):
            raise CodeError(f"the archive's entry {e.filename!r} is a link")
    sha = hashlib.sha256(body).hexdigest()
    final = code_dir(data_dir, sha)
    if final.is_dir():
        return StoredCode(sha, len(files), unpacked)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=".tmp-"))
    try:
        for e in files:
            target = tmp / e.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(e) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst)
        os.replace(tmp, final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not final.is_dir():  # another upload of the same archive won the rename: theirs is the same
            raise
    return StoredCode(sha, len(files), unpacked)


def pack_folder(folder: str | os.PathLike, max_bytes: int) -> bytes:
    """A folder as a zip archive (what `actstudy submit --code DIR` uploads), without caches and VCS folders."""
    root = Path(folder)
    if not root.is_dir():
        raise CodeError(f"--code: {folder} is not a folder")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root)
            if any(part in SKIPPED for part in rel.parts) or path.suffix == ".pyc" or not path.is_file() or path.is_symlink():
                continue
            info = zipfile.ZipInfo(rel.as_posix(), date_time=(1980, 1, 1, 0, 0, 0))  # the same folder: the same archive
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, path.read_bytes())
            if buffer.tell() > max_bytes:
                raise CodeError(f"--code: {folder} packs to more than {max_bytes:,} bytes (the service's limit)")
    return buffer.getvalue()
