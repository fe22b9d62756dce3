"""gpuprov's own wheel, built from a clean copy of this checkout.

A bundle carries gpuprov as a wheel (gpuprov/bundle/wheels.py resolves its dependencies
beside it), and the mirror host installs the mirror's services from that wheel with no
internet. So the wheel must hold exactly the checkout's current files: a stale build/ left
by an earlier in-tree build never rides along, and an unchanged checkout gives the same
bytes (a differential bundle carries it only when it changed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from gpuprov.errors import GpuprovError

SOURCE_DATE_EPOCH = "1735689600"  # 2025-01-01: an unchanged checkout gives the same wheel


class WheelhouseError(GpuprovError):
    """pip could not build gpuprov's wheel (its last lines of output in the message)."""


def repo_root() -> Path:
    """The checkout this gpuprov runs from (the directory holding pyproject.toml)."""
    return Path(__file__).resolve().parents[2]


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
