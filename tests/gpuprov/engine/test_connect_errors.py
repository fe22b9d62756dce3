"""Connection errors become one line with the fix (pyinfra's messages as they read)."""

from __future__ import annotations

from pathlib import Path

import pytest
from clusters import make_cluster

from gpuprov.engine.connect import describe_error, host_data


@pytest.fixture
def cluster(tmp_path: Path):
    return make_cluster(tmp_path, [("gpu003", "10.0.1.3", 2222)], Path("/keys/id"))


@pytest.mark.parametrize(
    ("message", "kind", "text"),
    [
        (
            "SSH error (StrictPolicy: No host key for [10.0.1.3]:2222 found in known_hosts)",
            "unknown-key",
            "host key not in",
        ),
        (
            "SSH host key error (Host key for 10.0.1.3 does not match.)",
            "changed-key",
            "HOST KEY CHANGED",
        ),
        ("Authentication error (username=root, key=/keys/id)", "auth", "authentication failed"),
        (
            "Could not connect ([Errno None] Unable to connect to port 2222 on 10.0.1.3)",
            "unreachable",
            "unreachable (Unable to connect to port 2222 on 10.0.1.3)",
        ),
        ("Could not connect (timed out)", "unreachable", "unreachable (timed out)"),
    ],
)
def test_one_line_per_error(cluster, message, kind, text):
    got_kind, line = describe_error(cluster, cluster.hosts["gpu003"], message)
    assert got_kind == kind
    assert line.startswith("gpu003 (10.0.1.3:2222): ") and text in line and "\n" not in line


def test_host_data_is_strict_by_default(cluster):
    host = cluster.hosts["gpu003"]
    data = host_data(cluster, host, accept_new=False, password=None)
    assert data["ssh_strict_host_key_checking"] == "yes"
    assert data["ssh_known_hosts_file"] == str(cluster.path.parent / "known_hosts")
    assert (data["ssh_hostname"], data["ssh_port"], data["ssh_key"]) == (
        "10.0.1.3",
        2222,
        "/keys/id",
    )
    assert data["gpuprov_host"] is host and data["gpuprov_cluster"] == "testcluster"
    assert data["gpuprov_min_free_gb"] == host.vars["gpuprov_min_free_gb"]  # vars pass through
    assert "_sudo" not in data
    assert (
        host_data(cluster, host, accept_new=True, password=None)["ssh_strict_host_key_checking"]
        == "accept-new"
    )


def test_sudo_password_comes_from_the_environment(cluster, monkeypatch):
    from dataclasses import replace

    from gpuprov.engine.connect import sudo_password

    host = cluster.hosts["gpu003"]
    host = replace(host, ssh=replace(host.ssh, user="ubuntu", sudo=True))
    monkeypatch.setenv("GPUPROV_SUDO_PASSWORD", "s3cret")
    password = sudo_password(cluster, [host], prompt=False)
    data = host_data(cluster, host, accept_new=False, password=password)
    assert data["_sudo"] is True and data["_sudo_password"] == "s3cret"
    monkeypatch.delenv("GPUPROV_SUDO_PASSWORD")
    assert sudo_password(cluster, [host], prompt=False) is None  # NOPASSWD sudo


def test_one_sudo_password_per_variable(tmp_path, monkeypatch):
    """Issue 13 item 5: the first host's variable was read and used for every host."""
    from dataclasses import replace

    from gpuprov.engine.connect import sudo_password

    cluster = make_cluster(tmp_path, [("a", "10.0.1.1", 22), ("b", "10.0.1.2", 22)], None)
    a, b = cluster.hosts["a"], cluster.hosts["b"]
    a = replace(a, ssh=replace(a.ssh, user="alice", sudo=True, sudo_password_env="PW_A"))
    b = replace(b, ssh=replace(b.ssh, user="bob", sudo=True, sudo_password_env="PW_B"))
    monkeypatch.setenv("PW_A", "alice-secret")
    monkeypatch.setenv("PW_B", "bob-secret")
    secrets = sudo_password(cluster, [a, b], prompt=False)
    assert (
        host_data(cluster, a, accept_new=False, password=secrets)["_sudo_password"]
        == "alice-secret"
    )
    assert (
        host_data(cluster, b, accept_new=False, password=secrets)["_sudo_password"] == "bob-secret"
    )
    monkeypatch.delenv("PW_B")
    data = host_data(cluster, b, accept_new=False, password=sudo_password(cluster, [a, b], False))
    assert "_sudo_password" not in data  # never another host's secret
