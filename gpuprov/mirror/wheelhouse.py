"""The wheels that install the mirror's services on a host with no internet.

The mirror host is air-gapped: nothing may be fetched there. So the control node (or the
connected side of a bundle build) assembles a *wheelhouse*: a wheel of this checkout
(`pip wheel --no-deps`), the wheel closure of what `gpuprov mirror serve` imports
(aiohttp, click, rich, ruamel.yaml: not pyinfra, paramiko or gevent, which only the control
node needs), built for the mirror host's Python, and pip's own wheel, which runs straight
from the file (`python3 pip.whl/pip install …`). That last point is why the host needs no
`python3-venv`/`python3-pip` package: Debian's `python3` has the venv module, and
`python3 -m venv --without-pip` needs nothing else.

`deploys/mirror_server.py` uploads the directory and installs from it with
`pip install --no-index --find-links`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gpuprov.errors import GpuprovError, InputError, Location, Problem

# What `gpuprov mirror serve` imports at run time (kept in step with pyproject.toml).
SERVER_REQUIREMENTS = (
    "aiohttp>=3.10,<4",
    "click>=8.1,<9",
    "rich>=13,<16",
    "ruamel.yaml>=0.18,<0.20",
)
REQUIREMENTS_FILE = "requirements.txt"
SOURCE_DATE_EPOCH = "1735689600"  # 2025-01-01: an unchanged checkout gives the same wheel
# glibc 2.36 on Debian 12; manylinux wheels up to that run there.
DEFAULT_PLATFORMS = (
    "manylinux_2_36_x86_64",
    "manylinux_2_28_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
)


class WheelhouseError(GpuprovError):
    """pip could not build or download a wheel."""


@dataclass(frozen=True)
class Wheelhouse:
    path: Path
    digest: str  # sha256 over the sorted (name, sha256) of every file: names a venv

    @property
    def gpuprov_wheel(self) -> Path:
        wheels = sorted(self.path.glob("gpuprov-*.whl"))
        if len(wheels) != 1:
            raise InputError(
                [
                    Problem(
                        Location(str(self.path)), f"expected one gpuprov wheel, found {len(wheels)}"
                    )
                ]
            )
        return wheels[0]

    @property
    def pip_wheel(self) -> Path:
        wheels = sorted(self.path.glob("pip-*.whl"))
        if not wheels:
            raise InputError([Problem(Location(str(self.path)), "no pip wheel in the wheelhouse")])
        return wheels[-1]


def repo_root() -> Path:
    """The checkout this gpuprov runs from (the directory holding pyproject.toml)."""
    return Path(__file__).resolve().parents[2]


def directory_digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path)}\0{hashlib.sha256(f.read_bytes()).hexdigest()}\n".encode())
    return h.hexdigest()


def load_wheelhouse(path: Path) -> Wheelhouse:
    path = Path(path)
    if not (path / REQUIREMENTS_FILE).is_file():
        raise InputError(
            [Problem(Location(str(path)), f"not a wheelhouse: no {REQUIREMENTS_FILE}")]
        )
    return Wheelhouse(path, directory_digest(path))


def _pip(args: list[str], what: str, env: dict[str, str] | None = None) -> None:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", **(env or {})}
    done = subprocess.run(
        [sys.executable, "-m", "pip", *args], capture_output=True, text=True, env=env
    )
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
        raise WheelhouseError(f"pip could not {what}:\n{tail}")


# Never copied into the wheel's build: setuptools reuses an existing build/ in the source
# tree, so modules since moved or deleted would ride along in the wheel; the rest is not
# part of the package.
NOT_SOURCE = frozenset({".git", ".venv", "build", "dist", ".cache", "tests", "benchmarks",
                        "docs", "lab", ".vagrant"})  # fmt: skip
NEVER = frozenset({"__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache"})


def build_gpuprov_wheel(dest: Path, source: Path | None = None) -> Path:
    """gpuprov's wheel of `source` (this checkout) into `dest`, replacing an older one.
    Built from a clean copy of the source, so nothing but its current files goes in;
    SOURCE_DATE_EPOCH is fixed, so unchanged files give the same bytes."""
    root = Path(source or repo_root()).absolute()
    dest.mkdir(parents=True, exist_ok=True)

    def ignore(directory: str, names: list[str]) -> list[str]:
        top = Path(directory) == root
        return [n for n in names if (top and n in NOT_SOURCE) or n in NEVER
                or n.endswith((".pyc", ".egg-info"))]  # fmt: skip

    with tempfile.TemporaryDirectory(prefix="gpuprov-wheel-") as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(root, src, symlinks=True, ignore=ignore)
        out = Path(tmp) / "out"
        _pip(["wheel", "--no-deps", "-q", "-w", str(out), str(src)], "build gpuprov's wheel",
             env={"SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH})  # fmt: skip
        built = sorted(out.glob("gpuprov-*.whl"))
        if len(built) != 1:
            raise WheelhouseError(f"pip built {len(built)} gpuprov wheels, expected one")
        for old in dest.glob("gpuprov-*.whl"):
            old.unlink()  # the version does not change between commits; the content does
        return Path(shutil.copy2(built[0], dest / built[0].name))


def build_wheelhouse(
    dest: Path,
    *,
    source: Path | None = None,
    python_version: str = "3.11",
    platforms: tuple[str, ...] = DEFAULT_PLATFORMS,
    requirements: tuple[str, ...] = SERVER_REQUIREMENTS,
) -> Wheelhouse:
    """Fill `dest` with gpuprov's wheel, the server's dependency closure for CPython
    `python_version` on `platforms`, and pip. Needs PyPI (or a configured index): run it on
    the connected side. Existing wheels in `dest` are replaced by the same names."""
    dest = Path(dest)
    build_gpuprov_wheel(dest, source)
    abi = f"cp{python_version.replace('.', '')}"
    _pip(
        [
            "download", "-q", "--only-binary=:all:", "-d", str(dest),
            "--python-version", python_version, "--implementation", "cp",
            "--abi", abi, "--abi", "abi3", "--abi", "none",
            *(arg for p in (*platforms, "any") for arg in ("--platform", p)),
            *requirements, "pip",
        ],
        f"download the mirror server's wheels for Python {python_version}",
    )  # fmt: skip
    (dest / REQUIREMENTS_FILE).write_text("".join(f"{r}\n" for r in requirements))
    return Wheelhouse(dest, directory_digest(dest))
