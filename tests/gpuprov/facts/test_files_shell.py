"""The deploys' own facts, run in a real shell on real files (their commands are what
the hosts run; only the paths differ)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from gpuprov.facts.files import DeployExtras, FileDigests, FileState

# The shape nvidia-ctk writes: the hook's link name (libcuda.so.1) comes before the mount
# that names the driver version.
SPEC = """\
cdiVersion: 0.5.0
containerEdits:
  hooks:
  - args:
    - nvidia-cdi-hook
    - create-symlinks
    - --link
    - libcuda.so.1::/usr/lib/x86_64-linux-gnu/libcuda.so
  mounts:
  - containerPath: /usr/lib/x86_64-linux-gnu/libcuda.so.580.95.05
    hostPath: /usr/lib/x86_64-linux-gnu/libcuda.so.580.95.05
"""


def sh(command: str) -> list[str]:
    return subprocess.run(
        ["sh", "-c", command], capture_output=True, text=True, check=True
    ).stdout.splitlines()


def test_deploy_extras_digests_and_cdi_driver(tmp_path: Path) -> None:
    present, missing, spec = tmp_path / "a.conf", tmp_path / "none.conf", tmp_path / "nvidia.yaml"
    present.write_text("blacklist nouveau\n")
    spec.write_text(SPEC)
    fact = DeployExtras()
    out = fact.process(sh(fact.command(paths=(str(present), str(missing)), cdi_spec=str(spec))))
    assert out["digests"] == {
        str(present): hashlib.sha256(b"blacklist nouveau\n").hexdigest(),
        str(missing): None,
    }
    assert out["cdi_driver"] == "580.95.05"
    no_spec = fact.process(sh(fact.command(paths=(), cdi_spec=str(tmp_path / "x.yaml"))))
    assert no_spec["cdi_driver"] is None


def test_file_digest_facts(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"\x00\x01binary")
    want = hashlib.sha256(b"\x00\x01binary").hexdigest()
    f.chmod(0o640)
    assert FileState().process(sh(FileState().command(path=str(f)))) == {
        "mode": "640",
        "sha256": want,
    }
    assert FileState().process(sh(FileState().command(path=str(tmp_path / "no")))) is None
    both = FileDigests().process(sh(FileDigests().command(paths=[str(f), str(tmp_path / "no")])))
    assert both == {str(f): want, str(tmp_path / "no"): None}


def test_deploy_extras_digests_by_one_sha256sum(tmp_path: Path) -> None:
    """Every managed file's digest from one `sha256sum` run: a process per file was most
    of a GPU host's NodeFacts script under software emulation (docs/performance.md)."""
    import os
    import shutil

    real = shutil.which("sha256sum")
    assert real
    bindir, log = tmp_path / "bin", tmp_path / "calls"
    bindir.mkdir()
    (bindir / "sha256sum").write_text(f'#!/bin/sh\necho "$*" >> "{log}"\nexec {real} "$@"\n')
    (bindir / "sha256sum").chmod(0o755)
    files = [tmp_path / f"{name}.conf" for name in ("a", "b", "c")]
    for f in files:
        f.write_text(f"{f.name}\n")
    paths = (str(files[0]), str(tmp_path / "none.conf"), str(files[1]), str(files[2]))
    fact = DeployExtras()
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}
    out = subprocess.run(["dash", "-c", fact.command(paths=paths)], capture_output=True,
                         text=True, check=True, env=env).stdout  # fmt: skip
    assert fact.process(out.splitlines())["digests"] == {
        **{str(f): hashlib.sha256(f"{f.name}\n".encode()).hexdigest() for f in files},
        str(tmp_path / "none.conf"): None,
    }
    assert len(log.read_text().splitlines()) == 1, log.read_text()
    # none present: sha256sum is not run at all (it would read stdin)
    log.unlink()
    out = subprocess.run(["dash", "-c", fact.command(paths=(str(tmp_path / "none.conf"),))],
                         capture_output=True, text=True, check=True, env=env).stdout  # fmt: skip
    assert fact.process(out.splitlines())["digests"] == {str(tmp_path / "none.conf"): None}
    assert not log.exists()
