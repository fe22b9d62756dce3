"""What a no-op `gpuprov plan` / `apply` imports before it connects (docs/performance.md,
"Where a no-op apply spends its time"): on a converged cluster our own Python start is
most of the wall, so modules that only a change, another inventory format or another
command needs must stay out of it.

The real CLI runs under `python -X importtime` against an inventory whose one host
refuses connections: the run goes through the CLI, the inventory, the static checks and
the deploys' imports, then stops at "connect" (exit 3). Every module it imported is in
the importtime log. The deploys themselves must be in it (else the probe proved nothing).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# Imported by every no-op run before connecting: the probe reached the imports phase.
REQUIRED = ("pyinfra.api", "paramiko", "gpuprov.deploys.gpu_node", "gpuprov.deploys.mirror_server")

# Never imported before connecting, with why each one is not needed there.
NOT_BEFORE_CONNECT = {
    # every package manager's and init system's operations and facts (~85 ms of CPU):
    # only a reboot (gpuprov.operations.system) or a daemon-reload (deploys/mirror_client)
    # uses pyinfra's server operations, and the control-node check its Command fact
    "pyinfra.operations.server": "imported by the operation that reboots",
    "pyinfra.facts.server": "imported by the reboot's control-node check",
    # gpuprov.aptrepo's keys, publishing and verification (~17 ms): the deploys need only
    # the client stanza (gpuprov/aptrepo/sources.py)
    "gpuprov.aptrepo.keys": "loaded on first use (gpuprov/aptrepo/__init__.py)",
    "gpuprov.aptrepo.publish": "loaded on first use (gpuprov/aptrepo/__init__.py)",
    "gpuprov.aptrepo.verify": "loaded on first use (gpuprov/aptrepo/__init__.py)",
    # readers of what this inventory does not have (~15 ms): an INI file, an Ansible-shaped
    # YAML (and DeepOps' variables), a `bundle:` section (gpuprov/inventory/loader.py)
    "gpuprov.inventory.ini": "imported for INI inventories only",
    "gpuprov.inventory.ansible": "imported for Ansible-shaped inventories only",
    "gpuprov.inventory.deepops": "imported for Ansible-shaped inventories only",
    "gpuprov.inventory.bundle": "imported for inventories with a bundle: section only",
}


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: connections refused


def write_inventory(tmp: Path) -> Path:
    path = tmp / "site.yaml"
    path.write_text(
        "cluster:\n"
        "  name: startup\n"
        "  stack:\n"
        "    os: debian12\n"
        '    driver: {branch: "580", version: "580.95.05"}\n'
        "  ssh: {user: root, known_hosts: known_hosts, connect_timeout: 5}\n"
        "groups:\n"
        "  gpu:\n"
        "    profile: hgx-h100-8\n"
        "    hosts:\n"
        f"      node1: {{address: 127.0.0.1, port: {closed_port()}}}\n"
    )
    return path


def imported_modules(*args: str, cwd: Path) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "gpuprov.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200"},
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    assert proc.returncode == 3, proc.stderr[-3000:]  # the one host unreachable
    assert "node1" in proc.stderr and "unreachable" in proc.stderr, proc.stderr[-3000:]
    names = re.findall(r"^import time:\s+\d+ \|\s+\d+ \| +(\S+)$", proc.stderr, re.M)
    assert names, proc.stderr[-3000:]
    return set(names)


@pytest.mark.parametrize("command", [("plan",), ("apply", "--yes")])
def test_no_op_imports_before_connecting(tmp_path: Path, command: tuple[str, ...]) -> None:
    inv = write_inventory(tmp_path)
    modules = imported_modules(*command, str(inv), cwd=tmp_path)
    missing = [m for m in REQUIRED if m not in modules]
    assert not missing, f"the run did not reach the deploys' imports: {missing}"
    extra = {m: why for m, why in NOT_BEFORE_CONNECT.items() if m in modules}
    assert not extra, f"imported before connecting, not needed there: {extra}"
