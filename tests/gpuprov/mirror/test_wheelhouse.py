"""gpuprov's own wheel is built from a clean copy of the source: a stale build/ left in
the checkout by an earlier build (modules since moved or deleted) never rides along, and
an unchanged source gives the same bytes (bundles carry it only when it changed)."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

from gpuprov.mirror.wheelhouse import build_gpuprov_wheel


def source_tree(root: Path) -> Path:
    (root / "gpuprov").mkdir(parents=True)
    (root / "gpuprov" / "__init__.py").write_text("")
    (root / "gpuprov" / "current.py").write_text("X = 1\n")
    (root / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "gpuprov"\nversion = "0.0.1"\n'
        '[tool.setuptools.packages.find]\ninclude = ["gpuprov*"]\n'
    )
    # What an earlier in-tree build left: a module that no longer exists in the source.
    (root / "build" / "lib" / "gpuprov").mkdir(parents=True)
    (root / "build" / "lib" / "gpuprov" / "moved_away.py").write_text("STALE = True\n")
    return root


def test_stale_build_dir_never_enters_the_wheel(tmp_path):
    src = source_tree(tmp_path / "src")
    wheel = build_gpuprov_wheel(tmp_path / "out", src)
    names = zipfile.ZipFile(wheel).namelist()
    assert "gpuprov/current.py" in names
    assert "gpuprov/moved_away.py" not in names
    assert (src / "build" / "lib" / "gpuprov" / "moved_away.py").exists()  # source untouched

    again = build_gpuprov_wheel(tmp_path / "out2", src)
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (wheel, again)]
    assert digest[0] == digest[1]
