"""Each host's sudo password comes from its own `ssh.sudo_password_env` variable
(issue 13 item 5: the first host's was used for every host). Real sshd light hosts
whose users need a password for sudo; marker `host`, root only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

pytestmark = pytest.mark.host

USERS = {"alice": ("ALICE_SUDO", "pw-alice-1"), "bob": ("BOB_SUDO", "pw-bob-2")}


def add_user(lab, host: str, user: str, password: str) -> None:
    lab.exec(host, f"""set -e
useradd -m -s /bin/sh {user}
echo '{user}:{password}' | chpasswd
mkdir -p /home/{user}/.ssh
cp /root/.ssh/authorized_keys /home/{user}/.ssh/authorized_keys
chown -R {user}: /home/{user}/.ssh
echo '{user} ALL=(ALL) ALL' > /etc/sudoers.d/{user}
chmod 440 /etc/sudoers.d/{user}""")  # fmt: skip


def test_each_host_gets_its_own_variables_password(tmp_path: Path):
    if os.geteuid() != 0:
        pytest.skip("light hosts need root")
    from gpuprov.testbed.inventory import write_lab_inventory
    from gpuprov.testbed.lighthosts import LightHostLab

    with LightHostLab(2, prefix="sudo") as lab:
        hosts = [h.name for h in lab.hosts]
        for name, user in zip(hosts, USERS, strict=True):
            add_user(lab, name, user, USERS[user][1])
        inv = write_lab_inventory(
            tmp_path / "lab.yaml",
            hosts=[(h.name, h.address) for h in lab.hosts],
            key=lab.key_path,
            known_hosts=lab.known_hosts_path,
            os="debian12",
        )
        yaml = YAML()
        data = yaml.load(inv.read_text())
        for name, user in zip(hosts, USERS, strict=True):
            data["groups"]["gpu"]["hosts"][name]["ssh"] = {
                "user": user, "sudo": True, "sudo_password_env": USERS[user][0],
            }  # fmt: skip
        with inv.open("w") as fh:
            yaml.dump(data, fh)
        env = {**os.environ, **{v: pw for v, pw in USERS.values()}, "COLUMNS": "200"}
        proc = subprocess.run(
            [sys.executable, "-m", "gpuprov.cli", "facts", str(inv), "--output", "json"],
            capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        facts = json.loads(proc.stdout)
        assert all(facts[n]["ok"] for n in hosts), facts
        # and sudo really needs it: without bob's variable, bob's host alone fails (fast:
        # no password means `sudo -n`; a wrong one makes sudo retry for minutes)
        del env["BOB_SUDO"]
        proc = subprocess.run(
            [sys.executable, "-m", "gpuprov.cli", "facts", str(inv), "--output", "json"],
            capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=300,
        )  # fmt: skip
        assert proc.returncode != 0
        facts = json.loads(proc.stdout)
        assert facts[hosts[0]]["ok"] and not facts[hosts[1]]["ok"], facts
        assert f"{hosts[1]}: could not read facts" in proc.stderr
