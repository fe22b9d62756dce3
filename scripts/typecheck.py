"""mypy over the one import package gpuprov, as it installs.

setup.py installs the top-level cli/, deploys/ and templates/ folders as gpuprov.cli,
gpuprov.deploys and gpuprov.templates; mypy cannot follow that mapping (nor the editable
install's import hook). So this builds the installed layout as a tree of symlinks under
build/typecheck/ and runs `mypy -p gpuprov` there with the repository's configuration
(pyproject.toml, [tool.mypy]). Exit status: mypy's.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAPPED = ("cli", "deploys", "templates")  # as in setup.py


def build_tree(out: Path) -> Path:
    package = out / "gpuprov"
    if out.exists():
        shutil.rmtree(out)
    package.mkdir(parents=True)
    for entry in (REPO / "gpuprov").iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    for name in MAPPED:
        (package / name).symlink_to(REPO / name)
    return out


def main() -> int:
    tree = build_tree(REPO / "build" / "typecheck")
    cmd = [
        sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"),
        "--cache-dir", str(REPO / "build" / "mypy-cache"), "-p", "gpuprov",
    ]  # fmt: skip
    return subprocess.run(cmd, cwd=tree, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
