"""`hosts trust`, `facts`, `plan`, `apply` as an operator runs them: the real CLI in a
subprocess, a YAML inventory, a real sshd (root only).

The preflight change goes under a scratch `gpuprov_root` (this sshd serves this machine).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from loopback_sshd import LoopbackSshd, free_port

pytestmark = pytest.mark.host


def gpuprov(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "gpuprov.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


def host_lines(stderr: str) -> list[str]:
    """stderr without the static checks' located notes (`lab.yaml:5:5: note: ...`)."""
    return [ln for ln in stderr.splitlines() if ln.strip() and "lab.yaml:" not in ln]


def write_inventory(
    tmp: Path, sshd: LoopbackSshd, hosts: dict[str, tuple[str, int]], ignore: list[str]
) -> Path:
    lines = [
        "cluster:",
        "  name: clitest",
        "  stack:",
        "    os: debian12",
        '    driver: {branch: "580", version: "580.95.05"}',
        f"  ssh: {{user: root, key: {sshd.client_key}, known_hosts: known_hosts, connect_timeout: 3}}",
        "groups:",
        "  lab:",
        "    profile: hgx-h100-8",
        "    vars:",
        "      gpuprov_min_free_gb: 0.1",
        f"      gpuprov_preflight_ignore: {json.dumps(ignore)}",
        "    hosts:",
    ]
    for name, (address, port) in hosts.items():
        root = tmp / "root" / name  # one scratch root per host: this sshd serves one machine
        lines.append(
            f"      {name}: {{address: {address}, port: {port}, vars: {{gpuprov_root: {root}}}}}"
        )
    path = tmp / "lab.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_trust_facts_plan_apply(tmp_path: Path, sshd: LoopbackSshd):
    # this machine has no kernel headers and no GPUs: the lab says so explicitly
    inv = write_inventory(
        tmp_path,
        sshd,
        {"node1": ("127.0.0.1", sshd.port), "node2": ("127.0.0.2", sshd.port)},
        ["headers", "gpus"],
    )
    target = tmp_path / "root" / "node1" / "etc" / "gpuprov" / "host.json"
    target2 = tmp_path / "root" / "node2" / "etc" / "gpuprov" / "host.json"

    # unknown host key: one line, exit 3, nothing changed
    proc = gpuprov("plan", str(inv), cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    lines = host_lines(proc.stderr)
    assert len(lines) == 2 and all("host key not in" in line for line in lines)
    assert lines[0].startswith("node1 (127.0.0.1:") and lines[1].startswith("node2 (127.0.0.2:")
    assert "Traceback" not in proc.stderr
    proc = gpuprov("apply", str(inv), "--yes", cwd=tmp_path)
    assert proc.returncode == 3 and not (tmp_path / "root").exists()

    proc = gpuprov("hosts", "trust", str(inv), "--yes", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    fp = subprocess.run(
        ["ssh-keygen", "-lf", "-"], input=sshd.host_pub, capture_output=True, text=True
    ).stdout.split()[1]
    assert fp in proc.stdout
    recorded = (tmp_path / "known_hosts").read_text().splitlines()
    assert [line.split()[0] for line in recorded] == [
        f"[127.0.0.1]:{sshd.port}",
        f"[127.0.0.2]:{sshd.port}",
    ]
    assert (
        gpuprov("hosts", "trust", str(inv), cwd=tmp_path).returncode == 0
    )  # nothing new: no prompt
    proc = gpuprov("hosts", "trust", str(inv), "-o", "json", cwd=tmp_path)
    doc = json.loads(proc.stdout)
    assert proc.returncode == 0 and doc["recorded"] == 0
    assert [(h["host"], h["status"], h["fingerprint"]) for h in doc["hosts"]] == [
        ("node1", "known", fp),
        ("node2", "known", fp),
    ]

    proc = gpuprov("facts", str(inv), "--output", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    facts = json.loads(proc.stdout)["node1"]
    uname = subprocess.run(["uname", "-r"], capture_output=True, text=True).stdout.strip()
    assert facts["ok"] and facts["kernel"] == uname
    assert facts["os"] == "debian12" and facts["gpu_count"] == 0 and facts["free_bytes"] > 0
    for key in ("headers_installed", "secure_boot", "nouveau_loaded", "gpus", "nvswitch_count",
                "driver_loaded", "driver_installed"):  # fmt: skip
        assert key in facts
    assert gpuprov("facts", str(inv), cwd=tmp_path).returncode == 0

    proc = gpuprov("plan", str(inv), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "host.json" in proc.stdout and "Plan: 2 changes on 2 of 2 ready hosts" in proc.stdout
    assert "profile hgx-h100-8 expects 8" in proc.stderr  # the ignored GPU check, as a warning
    assert not (tmp_path / "root").exists()

    proc = gpuprov("apply", str(inv), cwd=tmp_path)  # no terminal, no --yes: refuse
    assert proc.returncode == 2 and not (tmp_path / "root").exists()

    proc = gpuprov("apply", str(inv), "--yes", "--output", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["summary"] == {"hosts": 2, "failed": 0, "changed": 2, "status": "completed"}
    assert json.loads(target.read_text())["cluster"] == "clitest"
    assert json.loads(target2.read_text())["host"] == "node2"

    proc = gpuprov("apply", str(inv), "--yes", "--output", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["summary"]["changed"] == 0

    proc = gpuprov("plan", str(inv), "--output", "json", cwd=tmp_path)
    assert json.loads(proc.stdout)["summary"]["changes"] == 0


def test_refusal_and_unreachable(tmp_path: Path, sshd: LoopbackSshd):
    closed = free_port()
    # nothing listens on 127.0.0.9 (the loader rejects two hosts with one address)
    hosts = {"node1": ("127.0.0.1", sshd.port), "gone": ("127.0.0.9", closed)}
    inv = write_inventory(tmp_path, sshd, hosts, ["headers"])
    proc = gpuprov("hosts", "trust", str(inv), "--yes", cwd=tmp_path)
    assert proc.returncode == 3  # node1 recorded, gone unreachable
    assert f"gone ([127.0.0.9]:{closed}): unreachable" in proc.stderr

    proc = gpuprov("apply", str(inv), "--yes", cwd=tmp_path)
    # node1 refused (no GPUs), gone unreachable: no host is ready, so no wave is drawn and
    # nothing is touched; one line says so, exit 1 (a refusal is more than a connection)
    assert proc.returncode == 1, proc.stderr
    err = host_lines(proc.stderr)
    assert any(line.startswith(f"gone (127.0.0.9:{closed}): unreachable") for line in err)
    assert any("node1: refused: [gpus] PCI bus shows no NVIDIA GPU" in line for line in err)
    assert err[-1] == "nothing would change: 1 host refused, 1 unreachable"
    assert "Traceback" not in proc.stderr and "waves" not in proc.stdout
    assert not (tmp_path / "root").exists()

    proc = gpuprov("facts", str(inv), "--limit", "gone", cwd=tmp_path)
    assert proc.returncode == 3 and len(host_lines(proc.stderr)) == 1
    proc = gpuprov("plan", str(inv), "--limit", "nosuchhost", cwd=tmp_path)
    assert proc.returncode == 2


def test_changed_host_key_is_loud_and_kept(tmp_path: Path, sshd: LoopbackSshd):
    inv = write_inventory(tmp_path, sshd, {"node1": ("127.0.0.1", sshd.port)}, ["headers"])
    key = tmp_path / "impostor"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    kind, b64 = Path(f"{key}.pub").read_text().split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd.port} {kind} {b64}\n")

    proc = gpuprov("hosts", "trust", str(inv), "--yes", cwd=tmp_path)
    assert proc.returncode == 1 and "HOST KEY CHANGED" in proc.stderr
    assert "NOT replaced" in proc.stderr and b64 in known.read_text()

    proc = gpuprov("plan", str(inv), cwd=tmp_path)
    assert proc.returncode == 3
    [line] = host_lines(proc.stderr)
    assert "HOST KEY CHANGED" in line and "--replace" in line

    proc = gpuprov("hosts", "trust", str(inv), "--yes", "--replace", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert b64 not in known.read_text() and sshd.host_pub.split()[1] in known.read_text()
