"""Write the Ansible side's inventory and ansible.cfg for a set of light hosts.

The settings an experienced Ansible user picks for speed (docs/performance.md):
pipelining (one SSH exec per task, no temporary files), forks = hosts, fact gathering off
(the play reads only what it checks), OpenSSH ControlPersist (connections kept open
between tasks and between runs), the Python interpreter named (no discovery), no retry
files. The same SSH key and known_hosts file as gpuprov, strict host key checking.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

PLAYBOOK = Path(__file__).parent / "playbook.yml"
_ADDRESS = re.compile(r"[0-9A-Za-z.:-]{1,253}")


def write_config(
    directory: Path, hosts: list[tuple[str, str]], key: Path, known_hosts: Path
) -> dict[str, str]:
    """inventory.ini and ansible.cfg in `directory`; returns the environment that makes
    ansible-playbook read them (ANSIBLE_CONFIG)."""
    lines = ["[gpu]"]
    for name, address in hosts:
        if not (_ADDRESS.fullmatch(name) and _ADDRESS.fullmatch(address)):
            raise ValueError(f"not a host name/address: {name!r} {address!r}")
        lines.append(f"{name} ansible_host={address}")
    (directory / "inventory.ini").write_text("\n".join(lines) + "\n")
    control = directory / "cp"  # short: a control socket path is limited to ~100 bytes
    control.mkdir(mode=0o700, exist_ok=True)
    ssh_args = (
        "-o ControlMaster=auto -o ControlPersist=300s "
        f"-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes "
        "-o IdentitiesOnly=yes -o BatchMode=yes"
    )
    (directory / "ansible.cfg").write_text(
        "[defaults]\n"
        f"inventory = {directory / 'inventory.ini'}\n"
        f"forks = {max(1, len(hosts))}\n"
        "gathering = explicit\n"
        "host_key_checking = True\n"
        "interpreter_python = /usr/bin/python3\n"
        "retry_files_enabled = False\n"
        "remote_user = root\n"
        f"private_key_file = {key}\n"
        f"local_tmp = {directory / 'tmp'}\n"
        "[ssh_connection]\n"
        "pipelining = True\n"
        f"ssh_args = {ssh_args}\n"
        f"control_path_dir = {control}\n"
        "control_path = %(directory)s/%%h\n"
    )
    return {
        **os.environ,
        "ANSIBLE_CONFIG": str(directory / "ansible.cfg"),
        "ANSIBLE_HOME": str(directory / "home"),
        "ANSIBLE_NOCOLOR": "1",
    }
