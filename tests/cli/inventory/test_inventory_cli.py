"""The real CLI in a subprocess: exit codes and output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "inventories" / "example.yaml"
ANSIBLE = REPO / "tests" / "gpuprov" / "inventory" / "ansible_hallc.yaml"


def gpuprov(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from gpuprov.cli import main; main()", *args],
        capture_output=True, text=True, cwd=cwd, timeout=120,
    )  # fmt: skip


def test_check_example_and_lab_exit_0():
    for name in ("example.yaml", "lab.yaml"):
        proc = gpuprov("inventory", "check", f"inventories/{name}")
        assert proc.returncode == 0, proc.stderr
        assert ": ok: cluster " in proc.stdout
        assert "error" not in proc.stderr


def test_check_misspelt_key_and_duplicate_address(tmp_path):
    lines = EXAMPLE.read_text().splitlines(keepends=True)
    text = "".join(lines)
    key_line = next(i for i, line in enumerate(lines) if "connect_timeout:" in line) + 1
    addr_line = next(i for i, line in enumerate(lines) if line.strip().startswith("gpu006:")) + 1
    bad = tmp_path / "site.yaml"
    bad.write_text(
        text.replace("connect_timeout: 10", "conect_timeout: 10").replace(
            "gpu006: {address: 10.20.2.12", "gpu006: {address: 10.20.1.12"
        )
    )
    proc = gpuprov("inventory", "check", str(bad))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    err = proc.stderr.splitlines()
    assert (
        f"{bad}:{key_line}:5: error: unknown key 'conect_timeout' in cluster.ssh; did you mean 'connect_timeout'?"
        in "\n".join(err)
    )
    assert any(
        line.startswith(f"{bad}:{addr_line}:") and "duplicate address '10.20.1.12'" in line
        for line in err
    ), err


def test_static_check_errors_exit_2_warnings_do_not(tmp_path):
    bad = tmp_path / "old.yaml"
    bad.write_text(
        EXAMPLE.read_text()
        .replace('branch: "580"', 'branch: "570"')
        .replace('"580.95.05"', '"570.133.20"')
    )
    proc = gpuprov("inventory", "check", str(bad))
    assert proc.returncode == 2
    assert "CUDA 13.0 needs driver 580.65.06 or later" in proc.stderr
    warn = tmp_path / "warn.yaml"
    warn.write_text(EXAMPLE.read_text().replace("    os: ubuntu2204\n", ""))
    proc = gpuprov("inventory", "check", str(warn))
    assert proc.returncode == 0 and "warning: no `stack.os`" in proc.stderr


def test_check_missing_file_and_syntax_error(tmp_path):
    proc = gpuprov("inventory", "check", str(tmp_path / "none.yaml"))
    assert proc.returncode == 2 and "not found" in proc.stderr
    bad = tmp_path / "syntax.yaml"
    bad.write_text("cluster: {name: x\ngroups: {}\n")
    proc = gpuprov("inventory", "check", str(bad))
    assert proc.returncode == 2 and f"{bad}:" in proc.stderr and "YAML syntax error" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_show_json_resolves_and_limits():
    proc = gpuprov(
        "inventory", "show", "inventories/example.yaml", "--output", "json", "--limit", "gpu00[12]"
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert [h["name"] for h in data["hosts"]] == ["gpu001", "gpu002"]
    h = data["hosts"][0]
    assert h["stack"]["driver"]["resolved_modules"] == "open"
    assert (
        h["domains"] == {"rack": "b01"} and h["ssh"]["sudo_password_env"] == "GPUPROV_SUDO_PASSWORD"
    )
    proc = gpuprov(
        "inventory", "show", "inventories/example.yaml", "-o", "json", "--limit", "mirror"
    )
    assert proc.returncode == 0
    assert [h["name"] for h in json.loads(proc.stdout)["hosts"]] == ["mirror01"]
    proc = gpuprov("inventory", "show", "inventories/example.yaml")
    assert proc.returncode == 0 and "hallb-hgx: 9 host(s)" in proc.stdout
    proc = gpuprov("inventory", "show", "inventories/example.yaml", "--limit", "nothing*")
    assert proc.returncode == 2


def test_show_never_prints_secrets(tmp_path, monkeypatch):
    inv = tmp_path / "s.yaml"
    inv.write_text(
        EXAMPLE.read_text().replace(
            "sudo: true ", "sudo: true\n    sudo_password_env: SITE_SUDO_PW "
        )
    )
    proc = subprocess.run(
        [sys.executable, "-c", "from gpuprov.cli import main; main()", "inventory", "show", str(inv), "-o", "json"],
        capture_output=True, text=True, env={**__import__("os").environ, "SITE_SUDO_PW": "s3cret-value"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "s3cret-value" not in proc.stdout + proc.stderr and "SITE_SUDO_PW" in proc.stdout


def test_import_writes_refuses_overwrite_force(tmp_path):
    out = tmp_path / "hallc.yaml"
    proc = gpuprov("inventory", "import", str(ANSIBLE), "--to", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "# replaced PSU 2026-02" in out.read_text()
    assert gpuprov("inventory", "check", str(out)).returncode == 0
    before = out.read_text()
    proc = gpuprov("inventory", "import", str(ANSIBLE), "--to", str(out))
    assert proc.returncode == 2 and "--force" in proc.stderr and out.read_text() == before
    assert gpuprov("inventory", "import", str(ANSIBLE), "--to", str(out), "--force").returncode == 0
    assert [p.name for p in tmp_path.iterdir()] == ["hallc.yaml"]  # no temp files left


def test_help_lists_commands():
    proc = gpuprov("inventory", "--help")
    assert proc.returncode == 0
    for cmd in ("check", "show", "import"):
        assert cmd in proc.stdout


def test_check_reports_each_hardening_refusal_located(tmp_path):
    """Issue 13: hostile values are refused by `inventory check` with FILE:LINE:COL and
    exit 2, every one at once, and nothing runs."""
    lines = EXAMPLE.read_text().splitlines(keepends=True)
    text = "".join(lines)
    gpu001 = next(i for i, line in enumerate(lines) if "gpu001: {address:" in line) + 1
    bad = tmp_path / "site.yaml"
    bad.write_text(
        text.replace("gpu001: {address: 10.20.1.11", "gpu001: {address: '$(touch${IFS}MARK)'")
        .replace("gpu002: {address: 10.20.1.12", "gpu002: {address: 10.20.1.12, vars: {ssh_config_file: /tmp/x}")
        .replace("drain: \"scontrol update nodename={host} state=drain reason=gpuprov\"",
                 "drain: \"scontrol update nodename='{host}' state=drain\"")
    )  # fmt: skip
    proc = gpuprov("inventory", "check", str(bad), cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"{bad}:{gpu001}:" in proc.stderr and "expected a host name" in proc.stderr
    assert "vars.ssh_config_file: connection and sudo settings" in proc.stderr
    assert "rollout.drain: a placeholder is inside quotes" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "MARK").exists()
