from __future__ import annotations

from pathlib import Path

import pytest

from gpuprov.errors import InputError
from gpuprov.inventory.convert import convert_file
from gpuprov.inventory.loader import load_inventory

ANSIBLE = Path(__file__).with_name("ansible_hallc.yaml")


def test_ansible_inventory_loads():
    c = load_inventory(ANSIBLE)
    assert c.name == "hallc"
    assert [h.name for h in c.gpu_hosts()] == ["gpu101", "gpu102", "gpu201"]
    g = c.hosts["gpu102"]
    assert (g.address, g.ssh.port, g.ssh.user, g.ssh.sudo) == ("10.30.1.12", 2222, "ubuntu", True)
    assert g.profile == "hgx-h200-8" and g.rack == "c01" and g.group == "rack_c01"
    assert g.stack.driver.version == "580.95.05" and g.stack.os == "ubuntu2404"
    assert c.hosts["gpu201"].vars == {"slurm_partition": "big"}
    assert c.hosts["gpu201"].rack == "c02"  # from the rack group's vars
    assert c.hosts["mirror01"].role == "mirror" and c.mirror.host == "mirror01"
    assert any("ansible_python_interpreter" in w.message for w in c.warnings)


def test_ansible_errors_point_into_the_ansible_file(tmp_path):
    bad = tmp_path / "hosts.yaml"
    bad.write_text(
        ANSIBLE.read_text()
        .replace("gpuprov_profile: hgx-h200-8", "gpuprov_profile: hgx-h200")
        .replace("ansible_become: true", "ansible_become: true\n    ansible_become_password: x")
        .replace("gpuprov_os:", "gpuprov_oss:")
    )
    with pytest.raises(InputError) as info:
        load_inventory(bad)
    msgs = {(p.location.line, p.message.split(";")[0]) for p in info.value.problems}
    lines = bad.read_text().splitlines()
    by_text = {m: lines[line - 1] for line, m in msgs}
    assert any("secrets never" in m and "ansible_become_password" in t for m, t in by_text.items())
    assert any(
        "unknown variable 'gpuprov_oss'" in m and "gpuprov_oss" in t for m, t in by_text.items()
    )
    assert any(
        "unknown profile 'hgx-h200'" in m and "gpuprov_profile" in t for m, t in by_text.items()
    )


def test_import_keeps_comments_and_round_trips(tmp_path):
    out = convert_file(ANSIBLE, tmp_path / "hallc.yaml")
    text = out.read_text()
    assert "# Hall C GPU nodes (Ansible inventory, kept by the ops team)" in text
    assert "# the offline mirror" in text and "# replaced PSU 2026-02" in text
    assert "ansible_host" not in text and "ansible_user" not in text and "gpuprov_" not in text
    a, b = load_inventory(ANSIBLE), load_inventory(out)
    for name, h in a.hosts.items():
        o = b.hosts[name]
        assert (o.address, o.role, o.profile, o.domains, o.vars, o.stack, o.ssh.port, o.ssh.user) == (
            h.address, h.role, h.profile, h.domains, h.vars, _relocated(h.stack, o.stack), h.ssh.port, h.ssh.user,
        )  # fmt: skip


def _relocated(src, dst):
    """`src` with the locations of `dst` (they differ: another file)."""
    if src is None:
        return None
    from dataclasses import replace

    return replace(src, driver=replace(src.driver, location=dst.driver.location), location=dst.location,
                   cuda_location=dst.cuda_location)  # fmt: skip


def test_import_refuses_overwrite_and_writes_nothing_on_error(tmp_path):
    dst = tmp_path / "out.yaml"
    dst.write_text("keep me\n")
    with pytest.raises(InputError, match="already exists"):
        convert_file(ANSIBLE, dst)
    assert dst.read_text() == "keep me\n"
    convert_file(ANSIBLE, dst, force=True)
    assert "cluster:" in dst.read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(ANSIBLE.read_text().replace("hgx-h200-8", "nope"))
    with pytest.raises(InputError):
        convert_file(bad, tmp_path / "never.yaml")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml", "out.yaml"]


def test_profile_in_all_vars_is_every_groups_default(tmp_path):
    inv = tmp_path / "hosts.yaml"
    inv.write_text(
        "all:\n"
        "  vars: {gpuprov_profile: hgx-b200-8, gpuprov_driver_branch: '580', gpuprov_driver_version: 580.95.05}\n"
        "  children:\n"
        "    b200: {hosts: {a: {ansible_host: 10.0.0.1}}}\n"
        "    h100:\n"
        "      vars: {gpuprov_profile: hgx-h100-8}\n"
        "      hosts: {b: {ansible_host: 10.0.0.2}}\n"
    )
    c = load_inventory(inv)
    assert (c.hosts["a"].profile, c.hosts["b"].profile) == ("hgx-b200-8", "hgx-h100-8")
