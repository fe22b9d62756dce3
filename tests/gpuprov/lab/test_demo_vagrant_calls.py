"""LAB, fast tier: what a re-run of `make demo` asks Vagrant. Each `vagrant` call is
seconds of Ruby and libvirt (docs/performance.md), so a re-run asks `vagrant status` once
and `vagrant ssh-config` once: no `vagrant up` when every VM runs, the states read by
`up` serve the inventory step, and the HostNames the inventory step read serve the air
gap's management addresses. A `vagrant` on PATH records each call and answers with
output captured from a real lab (tests/gpuprov/lab/captures/)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gpuprov.lab import airgap
from gpuprov.lab.box import LabError
from gpuprov.lab.demo import Demo
from gpuprov.lab.vagrant import LabSettings

CAPTURES = Path(__file__).parent / "captures"


@pytest.fixture
def fake_vagrant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`vagrant` answering `status --machine-readable` with $FAKE_STATUS and `ssh-config`
    with $FAKE_SSH_CONFIG; every call appended to the returned log."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "vagrant.calls"
    tool = bindir / "vagrant"
    tool.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> "{log}"\n'
        'case "$1" in\n'
        '  status) cat "$FAKE_STATUS" ;;\n'
        '  ssh-config) cat "$FAKE_SSH_CONFIG" ;;\n'
        "  up) exit 0 ;;\n"
        '  *) echo "unexpected: $*" >&2; exit 9 ;;\n'
        "esac\n"
    )
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SSH_CONFIG", str(CAPTURES / "vagrant-ssh-config.txt"))
    log.touch()
    return log


def settings(tmp_path: Path, gpus: int = 1) -> LabSettings:
    (tmp_path / "lab").mkdir(exist_ok=True)  # the demo's log goes there
    return LabSettings(gpus=gpus, dir=tmp_path / "lab", vagrantfile_dir=tmp_path)


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines()


def test_no_vagrant_up_when_every_vm_runs(
    tmp_path: Path, fake_vagrant: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_STATUS", str(CAPTURES / "vagrant-status-running.txt"))
    said: list[str] = []
    demo = Demo(settings(tmp_path), out=said.append)
    demo.up()
    assert calls(fake_vagrant) == ["status --machine-readable"]
    assert "    all running already" in said
    assert demo.states == {"mirror01": "running", "gpu01": "running"}


def test_vagrant_up_when_a_vm_is_not_running(
    tmp_path: Path, fake_vagrant: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # mirror01 and gpu01 running, gpu02 not created
    monkeypatch.setenv("FAKE_STATUS", str(CAPTURES / "vagrant-status-one-missing.txt"))
    demo = Demo(settings(tmp_path, gpus=2), out=lambda _: None)
    demo.up()
    assert calls(fake_vagrant) == ["status --machine-readable", "up --provider libvirt"]
    assert demo.states is None  # `up` changed them: the inventory step asks again


def test_management_addresses_from_what_the_inventory_step_read(
    tmp_path: Path, fake_vagrant: Path
) -> None:
    s = settings(tmp_path)
    assert airgap.management_addresses(s, ["gpu01"], {"gpu01": "192.168.121.142"}) == [
        "192.168.121.142"
    ]
    assert calls(fake_vagrant) == []
    with pytest.raises(LabError, match="expected an IPv4 HostName"):
        airgap.management_addresses(s, ["gpu01"], {"gpu01": "gpu01; reboot"})
    # Not known (a caller without the inventory step): Vagrant is asked.
    assert airgap.management_addresses(s, ["gpu01"]) == ["192.168.121.142"]
    assert calls(fake_vagrant) == ["ssh-config gpu01"]
