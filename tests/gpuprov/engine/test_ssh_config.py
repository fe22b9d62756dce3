"""The ssh_config gpuprov connects with: its strict block first, the operator's config
after it, read by paramiko as pyinfra does (issue 13 item 20; the real ProxyJump hops
are in test_proxyjump_lighthosts.py)."""

from __future__ import annotations

import stat

import pytest
from paramiko import SSHConfig

from gpuprov.engine.ssh_config import cluster_ssh_config
from gpuprov.errors import InputError


def test_strict_block_wins_over_the_operators_config(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh/config").write_text(
        "Host *\n    StrictHostKeyChecking no\n    UserKnownHostsFile /dev/null\n"
        "Host gpu*\n    ProxyJump bastion\n    User ops\n"
    )
    kh = tmp_path / "site" / "known_hosts"
    path = cluster_ssh_config(kh)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    config = SSHConfig.from_path(str(path))
    for name in ("bastion", "gpu01"):
        found = config.lookup(name)
        assert found["stricthostkeychecking"] == "yes"
        assert found["userknownhostsfile"] == str(kh)
    assert config.lookup("gpu01")["proxyjump"] == "bastion"  # the operator's own settings stay
    assert config.lookup("gpu01")["user"] == "ops"
    assert cluster_ssh_config(kh) == path  # one file per process and content


@pytest.mark.parametrize("name", ["known hosts", "kh#1", "kh%h"])
def test_a_path_ssh_config_cannot_carry_is_refused(tmp_path, name):
    with pytest.raises(InputError, match="ssh_config line"):
        cluster_ssh_config(tmp_path / name)
