"""Fixtures: the stand-in .debs built once per session, and throwaway simulated hosts made by
extracting them (dpkg-deb -x, no root needed) under a directory used as GPUPROV_SIM_ROOT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gpuprov.testbed.standins import build_standins, install_sim_profile, render_profile


@pytest.fixture(scope="session")
def debs(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("standins")
    return {p.name: p for p in build_standins(out)}


def deb(debs: dict[str, Path], name: str, version: str) -> Path:
    matches = [p for n, p in debs.items() if n.startswith(f"{name}_{version}")]
    assert len(matches) == 1, f"{name} {version}: {matches}"
    return matches[0]


class SimHost:
    """A directory standing for a host's root; runs the stand-in programs against it."""

    def __init__(self, root: Path, debs: dict[str, Path]) -> None:
        self.root = root
        self.debs = debs
        self.pids: list[Path] = []

    def extract(self, name: str, version: str) -> None:
        subprocess.run(
            ["dpkg-deb", "-x", str(deb(self.debs, name, version)), str(self.root)], check=True
        )

    def profile(self, name: str = "hgx-h100-8", **faults) -> None:
        install_sim_profile(self.root, render_profile(name, **faults))

    def load_module(self, version: str | None) -> None:
        run = self.root / "run/nvidia-sim"
        run.mkdir(parents=True, exist_ok=True)
        if version is None:
            (run / "module-version").unlink(missing_ok=True)
        else:
            (run / "module-version").write_text(version + "\n")

    def run(
        self, path: str, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        full = {**os.environ, "GPUPROV_SIM_ROOT": str(self.root), **(env or {})}
        return subprocess.run(
            [sys.executable, str(self.root / path.lstrip("/")), *args],
            capture_output=True,
            text=True,
            env=full,
            timeout=60,
        )

    def daemon(self, path: str, pidfile: str, *args: str) -> None:
        proc = self.run(path, *args)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        self.pids.append(self.root / pidfile.lstrip("/"))

    def stop_daemons(self) -> None:
        for pidfile in self.pids:
            if pidfile.exists():
                os.kill(int(pidfile.read_text()), signal.SIGTERM)


@pytest.fixture
def host(tmp_path, debs):
    h = SimHost(tmp_path / "root", debs)
    h.root.mkdir()
    (h.root / "etc").mkdir()
    (h.root / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    yield h
    h.stop_daemons()
