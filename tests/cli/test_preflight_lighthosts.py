"""Preflight on light hosts with real faults, several on one host, through the real CLI.

node01 is the issue's host: Debian listed as Ubuntu (`stack.os: ubuntu2204`), no kernel
headers for the running kernel and none installable (no apt source), no GPU on the PCI
bus of an `hgx-h100-8`, and a 64 MiB disk (its overlay's writable layer is a tmpfs, so
`df /` inside it says so). node02 only lacks GPUs. node03 is powered off in the wave
test. node04 and node05 are fine (their headers and GPU checks are ignored: no light
host has either). Root only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from ruamel.yaml import YAML

pytestmark = pytest.mark.host

ROOT = "/var/tmp/pfl"  # gpuprov_root: where preflight records host.json on the hosts
ALL_FAULTS = ["stack_os", "gpus", "disk", "headers"]  # most fundamental first


@pytest.fixture(scope="module")
def lab() -> Iterator[object]:
    if os.geteuid() != 0:
        pytest.skip("light hosts need root")
    from gpuprov.testbed.lighthosts import LightHostLab

    with LightHostLab(5, prefix="pfl", disk_mb={"node01": 64}) as lab:
        yield lab


@pytest.fixture
def inventory(lab, tmp_path: Path) -> Path:
    from gpuprov.testbed.inventory import write_lab_inventory

    for host in lab.hosts:  # a clean slate on every host (the lab is shared)
        if host.pid is None:
            lab.start_host(host.name)
        lab.exec(host.name, f"rm -rf {ROOT} /lib/modules/$(uname -r)/build")
    path = write_lab_inventory(
        tmp_path / "lab.yaml",
        hosts=[(h.name, h.address) for h in lab.hosts],
        key=lab.key_path,
        known_hosts=lab.known_hosts_path,
        name="pfl",
        os="debian12",
        rack_size=2,
    )
    yaml = YAML()
    data = yaml.load(path.read_text())
    gpu = data["groups"]["gpu"]
    gpu["vars"] = {
        "gpuprov_min_free_gb": 1,
        "gpuprov_preflight_ignore": ["headers", "gpus"],
        "gpuprov_root": ROOT,
    }
    gpu["hosts"]["node01"]["stack"] = {"os": "ubuntu2204"}
    gpu["hosts"]["node01"]["vars"] = {"gpuprov_preflight_ignore": []}
    gpu["hosts"]["node02"]["vars"] = {"gpuprov_preflight_ignore": ["headers"]}
    data["cluster"]["rollout"] = {"canary": 1, "waves": ["100%"], "max_fail": 0}
    data["cluster"]["ssh"]["connect_timeout"] = 3
    with path.open("w") as fh:
        yaml.dump(data, fh)
    return path


def gpuprov(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpuprov.cli", *args],
        capture_output=True, text=True, cwd=cwd, timeout=180, stdin=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip


def refusal_lines(stderr: str, host: str) -> list[str]:
    """The block `host: refused: N problems...` and its indented refusal lines."""
    lines = stderr.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"{host}: refused"))
    block = [lines[start]]
    for line in lines[start + 1 :]:
        if not line.startswith("  "):
            break
        block.append(line.strip())
    return block


def identity_written(lab, host: str) -> bool:
    return lab.exec(host, f"test -e {ROOT}/etc/gpuprov/host.json", check=False).returncode == 0


def test_every_fault_of_a_host_in_one_run(lab, inventory: Path):
    cwd = inventory.parent
    kernel = lab.exec("node01", "uname -r").stdout.strip()
    one = ("--limit", "node01")

    # plan, text: the host is refused once, with all four problems, most fundamental first
    proc = gpuprov("plan", str(inventory), *one, cwd=cwd)
    assert proc.returncode == 1, proc.stderr
    header, *problems = refusal_lines(proc.stderr, "node01")
    assert header == "node01: refused: 4 problems, most fundamental first"
    assert [p.split("]")[0].lstrip("[") for p in problems] == ALL_FAULTS
    stack_os, gpus, disk, headers = problems
    assert (
        "the inventory says stack.os ubuntu2204, the host runs debian12 — fix stack.os" in stack_os
    )
    assert "PCI bus shows no NVIDIA GPU" in gpus and "reseat/replace the GPUs" in gpus
    assert "only 0.1 GB free on / (need 1 GB) — free disk space" in disk
    assert f"running kernel {kernel} and none installable — make linux-headers-{kernel}" in headers
    assert "gpuprov_preflight_ignore" in proc.stdout  # how to accept one knowingly
    assert "Traceback" not in proc.stderr

    # plan -o json: the same list, each with its code and fix
    proc = gpuprov("plan", str(inventory), *one, "-o", "json", cwd=cwd)
    assert proc.returncode == 1, proc.stderr
    host = json.loads(proc.stdout)["hosts"]["node01"]
    assert host["status"] == "refused"
    assert [r["code"] for r in host["refusals"]] == ALL_FAULTS
    assert all(r["reason"] and r["fix"] for r in host["refusals"])
    assert host["error"].startswith("4 problems: [stack_os] ")

    # apply --dry-run, text and json: the same list, no wave drawn, one line, exit 1
    proc = gpuprov("apply", str(inventory), *one, "--dry-run", cwd=cwd)
    assert proc.returncode == 1, proc.stderr
    assert refusal_lines(proc.stderr, "node01")[1:] == problems
    assert "nothing would change: 1 host refused" in proc.stderr.splitlines()
    assert "waves" not in proc.stdout and "staged rollout" not in proc.stdout
    proc = gpuprov("apply", str(inventory), *one, "--dry-run", "-o", "json", cwd=cwd)
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    assert [r["code"] for r in doc["plan"]["hosts"]["node01"]["refusals"]] == ALL_FAULTS
    assert doc["rollout_plan"]["waves"] == []
    assert doc["rollout_plan"]["excluded"] == {"node01": "refused"}

    # apply: the same, and nothing happens (no state file, no host.json)
    proc = gpuprov("apply", str(inventory), *one, "--yes", cwd=cwd)
    assert proc.returncode == 1, proc.stderr
    assert refusal_lines(proc.stderr, "node01")[1:] == problems
    assert "nothing would change: 1 host refused" in proc.stderr.splitlines()
    assert not list(cwd.glob("*.gpuprov-state.db*")) and not identity_written(lab, "node01")
    proc = gpuprov("apply", str(inventory), *one, "--yes", "-o", "json", cwd=cwd)
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    assert [r["code"] for r in doc["refusals"]["node01"]] == ALL_FAULTS
    assert doc["summary"] == {"hosts": 1, "changed": 0, "failed": 1, "status": "nothing-to-change"}
    assert "nothing would change: 1 host refused" in proc.stderr.splitlines()
    assert doc["excluded"] == {"node01": "refused"}

    # the faults are read from the host: headers present -> that refusal is gone; ignored
    # codes become warnings and leave the rest in order
    lab.exec("node01", f"mkdir -p /lib/modules/{kernel}/build")
    proc = gpuprov("plan", str(inventory), *one, "-o", "json", cwd=cwd)
    assert [r["code"] for r in json.loads(proc.stdout)["hosts"]["node01"]["refusals"]] == [
        "stack_os", "gpus", "disk",
    ]  # fmt: skip
    yaml = YAML()
    data = yaml.load(inventory.read_text())
    data["groups"]["gpu"]["hosts"]["node01"]["vars"]["gpuprov_preflight_ignore"] = ["stack_os", "disk"]  # fmt: skip
    with inventory.open("w") as fh:
        yaml.dump(data, fh)
    proc = gpuprov("plan", str(inventory), *one, "-o", "json", cwd=cwd)
    assert proc.returncode == 1, proc.stderr
    host = json.loads(proc.stdout)["hosts"]["node01"]
    assert [r["code"] for r in host["refusals"]] == ["gpus"]
    assert sum("ignored: gpuprov_preflight_ignore" in w for w in host["warnings"]) == 2


def test_refused_and_unreachable_hosts_are_in_no_wave(lab, inventory: Path):
    cwd = inventory.parent
    lab.kill("node03")  # powered off: unreachable
    ready = ["node04", "node05"]

    proc = gpuprov("apply", str(inventory), "--dry-run", cwd=cwd)
    assert proc.returncode == 1, proc.stderr
    assert refusal_lines(proc.stderr, "node01")[0].endswith("4 problems, most fundamental first")
    [node02] = refusal_lines(proc.stderr, "node02")
    assert node02.startswith("node02: refused: [gpus] PCI bus shows no NVIDIA GPU")
    assert any(ln.startswith("node03 (") and "unreachable" in ln for ln in proc.stderr.splitlines())
    summary = [ln for ln in proc.stdout.splitlines() if " waves" in ln and "max_fail" in ln]
    assert summary == ["2 hosts in 2 waves; max_fail 0 per wave; not in any wave: 2 refused, 1 unreachable"]  # fmt: skip
    table = proc.stdout.split(summary[0])[0]
    assert all(n in table for n in ready) and not any(f"node0{i}" in table for i in (1, 2, 3))

    proc = gpuprov("apply", str(inventory), "--dry-run", "-o", "json", cwd=cwd)
    assert proc.returncode == 1, proc.stderr
    rplan = json.loads(proc.stdout)["rollout_plan"]
    assert sorted(h for w in rplan["waves"] for h in w["hosts"]) == ready
    assert rplan["excluded"] == {"node01": "refused", "node02": "refused", "node03": "unreachable"}

    # the apply rolls out the ready hosts only; the others are counted, exit 1
    proc = gpuprov("apply", str(inventory), "--yes", "-o", "json", cwd=cwd)
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    report = doc["rollout"]
    assert report["status"] == "completed" and sorted(report["done"]) == ready
    assert report["failed"] == []  # refused hosts did not fail a wave (max_fail is 0)
    assert sorted(h for w in report["plan"]["waves"] for h in w["hosts"]) == ready
    assert doc["summary"]["failed"] == 3 and doc["excluded"] == rplan["excluded"]
    assert [identity_written(lab, n) for n in ("node01", "node02", "node04", "node05")] == [
        False, False, True, True,
    ]  # fmt: skip

    # the ready hosts are converged now: nothing would change, said in one line, exit 1
    proc = gpuprov("apply", str(inventory), "--yes", cwd=cwd)
    assert proc.returncode == 1, proc.stderr
    assert "nothing would change: 2 hosts refused, 1 unreachable, 2 up to date" in proc.stderr
    assert "Apply these changes" not in proc.stderr

    # no host ready at all: the dry run and the apply say so, one line, no wave
    limit = ("--limit", "node01,node02,node03")
    for extra in (("--dry-run",), ("--yes",)):
        proc = gpuprov("apply", str(inventory), *limit, *extra, cwd=cwd)
        assert proc.returncode == 1, proc.stderr
        lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("nothing would change")]
        assert lines == ["nothing would change: 2 hosts refused, 1 unreachable"]
        assert "waves" not in proc.stdout
    # only unreachable: exit 3 (connections only)
    proc = gpuprov("apply", str(inventory), "--limit", "node03,node04", "--dry-run", cwd=cwd)
    assert proc.returncode == 3, proc.stderr
    assert "nothing would change: 1 host unreachable, 1 up to date" in proc.stderr
