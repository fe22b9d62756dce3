"""Light hosts: real sshd in network namespaces, checked over real SSH and real apt."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from gpuprov.testbed.lighthosts import LightHostLab

pytestmark = pytest.mark.host


@pytest.fixture(scope="module")
def lab():
    with LightHostLab(3) as lab:
        yield lab


def ssh(lab: LightHostLab, address: str, cmd: str, *, user: str = "root", timeout: float = 60):
    return subprocess.run(
        ["ssh", *lab.ssh_options(), f"{user}@{address}", cmd],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def test_control_node_reaches_every_host_with_strict_host_keys(lab: LightHostLab) -> None:
    assert len({h.host_key_pub for h in lab.hosts}) == 3  # every host has its own key
    for host in lab.hosts:
        out = ssh(lab, host.address, "hostname; id -u")
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == [host.name, "0"]
        out = ssh(lab, host.address, "sudo -n id -u", user="gpuprov")
        assert (out.returncode, out.stdout.strip()) == (0, "0"), out.stderr


def test_wrong_host_key_is_refused(lab: LightHostLab, tmp_path: Path) -> None:
    first, second = lab.hosts[0], lab.hosts[1]
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"{first.address} {second.host_key_pub}\n")
    opts = [o.replace(str(lab.known_hosts_path), str(wrong)) for o in lab.ssh_options()]
    out = subprocess.run(
        ["ssh", *opts, f"root@{first.address}", "true"], capture_output=True, text=True
    )
    assert out.returncode == 255
    assert "HOST IDENTIFICATION HAS CHANGED" in out.stderr or "verification failed" in out.stderr


def test_hosts_reach_each_other_and_the_control_node(lab: LightHostLab, tmp_path: Path) -> None:
    a, b = lab.hosts[0], lab.hosts[1]
    lab.exec(a.name, "cat > /root/.ssh/id_ed25519 && chmod 600 /root/.ssh/id_ed25519",
             input=lab.key_path.read_text())  # fmt: skip
    out = ssh(
        lab,
        a.address,
        f"ssh -o BatchMode=yes -o StrictHostKeyChecking=yes root@{b.address} hostname",
    )
    assert (out.returncode, out.stdout.strip()) == (0, b.name), out.stderr
    (tmp_path / "hello.txt").write_text("from the control node\n")
    url = lab.serve_http(tmp_path)
    out = ssh(lab, b.address, f"curl -fsS {url}hello.txt")
    assert (out.returncode, out.stdout) == (0, "from the control node\n"), out.stderr


def _tiny_repo(tmp_path: Path) -> Path:
    pkg = tmp_path / "pkg"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "usr/bin").mkdir(parents=True)
    (pkg / "DEBIAN/control").write_text(
        textwrap.dedent("""\
        Package: gpuprov-hello
        Version: 1.0-1
        Architecture: all
        Maintainer: gpuprov test bed <testbed@example.invalid>
        Description: test-bed self-test package
    """)
    )
    tool = pkg / "usr/bin/gpuprov-hello"
    tool.write_text("#!/bin/sh\necho hello from a real deb\n")
    tool.chmod(0o755)
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", pkg, repo / "gpuprov-hello_1.0-1_all.deb"],
                   check=True, capture_output=True)  # fmt: skip
    packages = subprocess.run(["apt-ftparchive", "packages", "."], cwd=repo, check=True,
                              capture_output=True, text=True).stdout  # fmt: skip
    (repo / "Packages").write_text(packages)
    return repo


def test_apt_get_install_from_a_repo_the_lab_serves(lab: LightHostLab, tmp_path: Path) -> None:
    url = lab.serve_http(_tiny_repo(tmp_path))
    host = lab.hosts[2]
    # [trusted=yes] only in this self-test: signed repos are the apt-repo helper's tests.
    cmd = (f"echo 'deb [trusted=yes] {url} ./' > /etc/apt/sources.list.d/selftest.list && "
           "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q gpuprov-hello "
           "&& gpuprov-hello")  # fmt: skip
    out = ssh(lab, host.address, cmd, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().endswith("hello from a real deb")
    status = lab.exec(host.name, "dpkg-query -W -f='${Status} ${Version}' gpuprov-hello").stdout
    assert status == "install ok installed 1.0-1"
    # Only that host changed: the others share the lower rootfs, not the upper dir.
    assert lab.exec(lab.hosts[0].name, "command -v gpuprov-hello", check=False).returncode != 0


def test_host_killed_mid_command_fails_the_command_promptly(lab: LightHostLab) -> None:
    host = lab.hosts[1]
    proc = subprocess.Popen(["ssh", *lab.ssh_options(), f"root@{host.address}", "sleep 300"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while lab.exec(host.name, "pgrep -x sleep", check=False).returncode != 0:
            assert time.monotonic() < deadline, "sleep never started on the host"
            time.sleep(0.1)
        killed_at = time.monotonic()
        lab.kill(host.name)
        assert proc.wait(timeout=15) != 0
        assert time.monotonic() - killed_at < 10
    finally:
        proc.kill()
        proc.wait()
    assert host.pid is None
    assert ssh(lab, host.address, "true").returncode == 255  # nothing answers any more
    assert lab.exec(host.name, "test -f /etc/hostname").returncode == 0  # disk is still there
    lab.start_host(host.name)
    assert ssh(lab, host.address, "hostname").stdout.strip() == host.name


def test_link_down_makes_a_host_unreachable(lab: LightHostLab) -> None:
    host = lab.hosts[0]
    lab.link_down(host.name)
    try:
        started = time.monotonic()
        out = subprocess.run(
            ["ssh", *lab.ssh_options(), "-o", "ConnectTimeout=2", f"root@{host.address}", "true"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert out.returncode == 255
        assert time.monotonic() - started < 15
        assert lab.exec(host.name, "hostname").stdout.strip() == host.name  # host itself is up
    finally:
        lab.link_up(host.name)
    assert ssh(lab, host.address, "true").returncode == 0


def test_write_inventory(lab: LightHostLab, tmp_path: Path) -> None:
    from ruamel.yaml import YAML

    path = lab.write_inventory(tmp_path / "inventory.yaml", mirror=True, dcgm=True)
    data = YAML(typ="safe").load(path.read_text())
    assert data["cluster"]["mirror"] == {"host": "node01"}
    assert data["cluster"]["stack"]["dcgm"] is True
    assert data["cluster"]["stack"]["driver"]["version"] == "580.95.05"
    assert data["cluster"]["ssh"]["known_hosts"] == str(lab.known_hosts_path)
    assert data["groups"]["gpu"]["hosts"]["node02"] == {
        "address": lab.hosts[1].address,
        "rack": "r01",
    }


# -- teardown leaves nothing behind -------------------------------------------------------


def _leftovers(names: list[str], pids: list[int], workdir: str) -> list[str]:
    found = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    found += [f"netns {n}" for n in names if n in netns.split()]
    found += [f"link {n}" for n in names if f" {n}:" in links or f" {n}@" in links]
    found += [f"pid {p}" for p in pids if Path(f"/proc/{p}").exists()]
    found += [
        f"mount {line}" for line in Path("/proc/mounts").read_text().splitlines() if workdir in line
    ]
    if Path(workdir).exists():
        found.append(f"dir {workdir}")
    return found


def _snapshot(lab: LightHostLab) -> tuple[list[str], list[int], str]:
    names = [lab.bridge] + [h.netns for h in lab.hosts] + [h.veth for h in lab.hosts]
    pids = [h.pid for h in lab.hosts if h.pid] + [p.pid for p in lab._procs.values()]
    return names, pids, str(lab.workdir)


def test_teardown_on_exit_and_on_exception_leaves_nothing() -> None:
    with LightHostLab(2) as lab:
        snap = _snapshot(lab)
        present = _leftovers(*snap)  # everything exists while the lab runs
        assert (
            len([x for x in present if x.startswith(("netns", "link", "pid", "mount"))])
            == 2 + 3 + 4 + 2
        )  # netns, bridge+veths, pids, overlays
    assert _leftovers(*snap) == []
    with pytest.raises(ZeroDivisionError), LightHostLab(2) as lab:
        snap = _snapshot(lab)
        _ = 1 / 0
    assert _leftovers(*snap) == []


_CHILD = """
import json, sys, time
from gpuprov.testbed.lighthosts import LightHostLab
lab = LightHostLab(2).__enter__()
names = [lab.bridge] + [h.netns for h in lab.hosts] + [h.veth for h in lab.hosts]
pids = [h.pid for h in lab.hosts] + [p.pid for p in lab._procs.values()]
print(json.dumps([names, pids, str(lab.workdir)]), flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_teardown_on_signal_leaves_nothing(sig: signal.Signals) -> None:
    child = subprocess.Popen([sys.executable, "-c", _CHILD], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    try:
        names, pids, workdir = json.loads(child.stdout.readline())
        assert all(Path(f"/proc/{p}").exists() for p in pids)
        child.send_signal(sig)
        child.wait(timeout=30)
    finally:
        child.kill()
        child.wait()
    assert _leftovers(names, pids, workdir) == []
