"""gpuprov itself and its dependencies as wheels, for the far side's Python versions.

1. gpuprov's wheel is built from a clean copy of this checkout (`pip wheel --no-deps`,
   SOURCE_DATE_EPOCH fixed so an unchanged checkout gives the same bytes; no stale build/).
2. pip resolves that wheel's dependencies for each Python version and the target OSes'
   glibc (`pip install --dry-run --report`, binary wheels only, `--python-version`,
   `--platform manylinux...`): the report names every file with its sha256.
3. Each file comes from the cache when it is there with that sha256, else it is fetched
   from the URL the index gave and checked against that sha256.
4. BUNDLE/wheels/ gets the files and one requirements file per Python version with
   every hash (`pip install --no-index --find-links wheels --require-hashes -r
   wheels/requirements-3.11.txt`); requirements.txt is the first version's.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from gpuprov.errors import GpuprovError
from gpuprov.mirror.wheelhouse import build_gpuprov_wheel

PIP_TIMEOUT_S = 1800
FETCH_TIMEOUT_S = 120
MAX_WHEEL_BYTES = 2 * 1024**3
WHEEL_RE = re.compile(r"([A-Za-z0-9_.]+)-([A-Za-z0-9_.!+]+)(-[0-9][A-Za-z0-9_]*)?-[A-Za-z0-9_.]+-[A-Za-z0-9_.]+-[A-Za-z0-9_.]+\.whl")  # fmt: skip
SHA256_RE = re.compile(r"[0-9a-f]{64}")


class WheelError(GpuprovError):
    """pip could not build, resolve or fetch a wheel (named in the message)."""


@dataclass(frozen=True)
class WheelFile:
    filename: str
    url: str
    sha256: str
    size: int | None  # known once cached or fetched


def platforms(glibc: tuple[int, int]) -> list[str]:
    """manylinux tags a host with `glibc` runs, newest first."""
    major, minor = glibc
    tags = [f"manylinux_{major}_{m}_x86_64" for m in range(minor, 16, -1)]
    return [*tags, "manylinux2014_x86_64"]


def _pip(args: list[str], what: str) -> str:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pip", *args],
            capture_output=True, text=True, env=env, timeout=PIP_TIMEOUT_S,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise WheelError(f"pip could not {what}: took longer than {PIP_TIMEOUT_S} s") from None
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
        raise WheelError(f"pip could not {what}:\n{tail}")
    return done.stdout


def build_own_wheel(dest: Path) -> Path:
    """gpuprov's wheel of this checkout into `dest` (a clean copy of the source: see
    gpuprov/mirror/wheelhouse.py)."""
    return build_gpuprov_wheel(dest)


def resolve(own_wheel: Path, python: str, glibc: tuple[int, int]) -> list[WheelFile]:
    """Every wheel gpuprov needs on CPython `python` (the report pip writes; no install)."""
    abi = f"cp{python.replace('.', '')}"
    with tempfile.TemporaryDirectory(prefix="gpuprov-pip-") as tmp:
        report = Path(tmp) / "report.json"
        _pip(
            [
                "install", "--dry-run", "-q", "--ignore-installed", "--report", str(report),
                "--target", str(Path(tmp) / "target"), "--only-binary=:all:",
                "--python-version", python, "--implementation", "cp",
                "--abi", abi, "--abi", "abi3", "--abi", "none",
                *(a for p in platforms(glibc) for a in ("--platform", p)),
                str(own_wheel), "pip",  # pip's wheel runs from the file: no python3-pip needed
            ],
            f"resolve gpuprov's dependencies for Python {python}",
        )  # fmt: skip
        data = json.loads(report.read_text())
    out = []
    for item in data.get("install", []):
        info = item.get("download_info") or {}
        url = str(info.get("url", ""))
        sha = ((info.get("archive_info") or {}).get("hashes") or {}).get("sha256", "")
        name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
        if (
            url.startswith("file:")
            and Path(urllib.parse.urlsplit(url).path).resolve() == own_wheel.resolve()
        ):
            continue  # our own, already in place
        if not WHEEL_RE.fullmatch(name):
            raise WheelError(f"pip chose {name!r} for Python {python}: not a wheel file name")
        if not SHA256_RE.fullmatch(sha):
            raise WheelError(f"the index gave no sha256 for {name} (refusing an unverified file)")
        out.append(WheelFile(name, url, sha, None))
    return sorted(out, key=lambda w: w.filename)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(4 << 20):
            h.update(chunk)
    return h.hexdigest()


def cached(cache: Path, wheel: WheelFile) -> Path | None:
    path = cache / wheel.filename
    return path if path.is_file() and _sha256(path) == wheel.sha256 else None


def fetch(cache: Path, wheel: WheelFile) -> Path:
    """The file from the index's URL into the cache, checked against its sha256."""
    cache.mkdir(parents=True, exist_ok=True)
    dest = cache / wheel.filename
    fd, tmp_name = tempfile.mkstemp(prefix=".part-", dir=cache)
    tmp = Path(tmp_name)
    h = hashlib.sha256()
    size = 0
    try:
        with (
            os.fdopen(fd, "wb") as out,
            urllib.request.urlopen(wheel.url, timeout=FETCH_TIMEOUT_S) as resp,
        ):  # noqa: S310 - the index's URL
            while chunk := resp.read(1 << 20):
                size += len(chunk)
                if size > MAX_WHEEL_BYTES:
                    raise WheelError(f"{wheel.filename}: larger than {MAX_WHEEL_BYTES} bytes")
                h.update(chunk)
                out.write(chunk)
        if h.hexdigest() != wheel.sha256:
            raise WheelError(
                f"{wheel.filename}: sha256 {h.hexdigest()} is not the index's {wheel.sha256}"
            )
        os.replace(tmp, dest)
    except OSError as exc:
        raise WheelError(f"could not fetch {wheel.filename} from {wheel.url}: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def remote_size(wheel: WheelFile) -> int | None:
    """The file's size from the index without fetching it (HEAD; a file: URL's stat)."""
    parts = urllib.parse.urlsplit(wheel.url)
    if parts.scheme == "file":
        path = Path(urllib.parse.unquote(parts.path))
        return path.stat().st_size if path.is_file() else None
    request = urllib.request.Request(wheel.url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_S) as resp:  # noqa: S310 - the index's URL
            length = resp.headers.get("Content-Length")
    except OSError:
        return None
    return int(length) if length and length.isdigit() else None


def requirement_lines(files: list[Path]) -> str:
    """`name==version --hash=sha256:...` for each distribution (every file's hash)."""
    by_dist: dict[tuple[str, str], list[str]] = {}
    for path in files:
        m = WHEEL_RE.fullmatch(path.name)
        assert m, path.name
        name = re.sub(r"[-_.]+", "-", m.group(1)).lower()
        by_dist.setdefault((name, m.group(2)), []).append(_sha256(path))
    lines = []
    for (name, version), hashes in sorted(by_dist.items()):
        lines.append(
            f"{name}=={version}"
            + "".join(f" \\\n    --hash=sha256:{h}" for h in sorted(set(hashes)))
        )
    return "\n".join(lines) + "\n"
