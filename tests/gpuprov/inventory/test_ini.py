"""Ansible INI inventories: located errors, DeepOps variables, `inventory import`.
(That the parse matches Ansible's is test_ansible_oracle.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from gpuprov.errors import InputError
from gpuprov.inventory import deepops, ranges
from gpuprov.inventory.convert import convert_file
from gpuprov.inventory.loader import load_inventory

DEEPOPS = Path(__file__).parent / "ansible_corpus" / "deepops" / "inventory"


def problems(path: Path) -> list[str]:
    with pytest.raises(InputError) as info:
        load_inventory(path)
    return [str(p) for p in info.value.problems]


def test_deepops_inventory_maps_driver_and_cuda_onto_stack() -> None:
    c = load_inventory(DEEPOPS)
    g = c.hosts["dgx03"]
    assert (g.group, g.address, g.rack, g.ssh.user) == ("kube-node", "10.0.2.3", "r02", "ubuntu")
    assert (g.stack.driver.branch, g.stack.driver.version) == ("580", "580.95.05")
    assert g.stack.cuda == ("12.8",) and g.stack.dcgm is True
    assert g.vars == {"slurm_partition": "batch"}
    assert c.hosts["mgmt01"].role == "controller" and c.hosts["login01"].role == "controller"
    notes = [str(w) for w in c.warnings]
    skip = [n for n in notes if "nvidia_driver_skip_reboot" in n]
    line = DEEPOPS.read_text().splitlines().index("nvidia_driver_skip_reboot=yes") + 1
    assert skip and skip[0].startswith(f"{DEEPOPS}:{line}:1: warning:")
    assert "reboots a host only when its kernel module changes" in skip[0]


@pytest.mark.parametrize(
    ("key", "value", "vars", "warning"),
    [
        ("nvidia_driver_branch", 580, [("gpuprov_driver_branch", "580")], None),
        ("nvidia_driver_ubuntu_branch", "570-server", [("gpuprov_driver_branch", "570")], None),
        ("nvidia_driver_branch", "580-open",
         [("gpuprov_driver_branch", "580"), ("gpuprov_driver_modules", "open")], None),
        ("nvidia_driver_package_version", "580.95.05-0ubuntu1",
         [("gpuprov_driver_version", "580.95.05")], None),
        ("nvidia_driver_package_version", "", [], "gpuprov pins one"),
        ("cuda_version", "cuda-toolkit-12-8", [("gpuprov_cuda", ["12.8"])], None),
        ("cuda_version", "cuda-13-0", [("gpuprov_cuda", ["13.0"])], None),
        ("cuda_version", "cuda", [], "newest CUDA"),
        ("install_dcgm", "no", [("gpuprov_dcgm", False)], None),
        ("container_manager", "containerd", [("gpuprov_container_runtime", "containerd")], None),
        ("container_manager", "crio", [], "not a runtime gpuprov installs"),
        ("nvidia_driver_persistence_mode_on", True, [], "nvidia-persistenced"),
        ("ansible_become", "yes", [("ansible_become", True)], None),
    ],
)  # fmt: skip
def test_deepops_variables(key, value, vars, warning) -> None:
    tr = deepops.translate(key, value)
    assert tr is not None and tr.vars == vars
    assert (warning is None and not tr.warnings) or warning in tr.warnings[0]


def test_unrelated_variables_are_not_deepops_ones() -> None:
    assert deepops.translate("slurm_partition", "batch") is None


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        ("[gpu]\ngpu[01:5]\n", "2:1", "same width"),
        ("[gpu]\n  gpu[5:1]\n", "2:3", "begins after it ends"),
        ("[gpu]\ngpu01 ansible_host\n", "2:7", "expected key=value"),
        ("[gpu]\ngpu01\n[gpu:vars]\nnokey\n", "4:1", "expected key=value"),
        ("[gpu]\ngpu01\n[gpu:hostz]\n", "3:1", "unknown type 'hostz'"),
        ("[gpu]\ngpu01\n[gpu two]\n", "3:1", "invalid section"),
        ("[gpu]\ngpu01\n[racks:vars]\nx=1\n", "3:1", "never defined"),
        ("[gpu]\ngpu01\n[all:children]\nnothere\n", "4:1", "undefined group 'nothere'"),
        ("[a]\nh1\n[b:children]\na\n[a:children]\nb\n", "6:1", "ancestor"),
        ("[gpu]\ngpu01 label='unterminated\n", "2:1", "cannot read host line"),
        ("[gpu]\ngpu01:\n", "2:1", "must be followed by a port"),
    ],
)
def test_ini_errors_are_located(tmp_path: Path, text: str, where: str, what: str) -> None:
    f = tmp_path / "hosts.ini"
    f.write_text(text)
    found = problems(f)
    assert any(p.startswith(f"{f}:{where}: error: ") and what in p for p in found), found


def test_validation_errors_point_into_the_ini_file(tmp_path: Path) -> None:
    f = tmp_path / "inventory"
    f.write_text(
        DEEPOPS.read_text()
        .replace("gpuprov_profile=hgx-h100-8", "gpuprov_profile=hgx-h100")
        .replace("gpu02      ansible_host=10.0.2.2", "gpu02      ansible_host=10.0.2.1")
        .replace(
            "nvidia_driver_package_version=580.95.05-1", "nvidia_driver_package_version=570.1.1"
        )
    )
    lines = f.read_text().splitlines()

    def line_of(start: str) -> int:
        return next(i for i, text in enumerate(lines, 1) if text.startswith(start))

    found = problems(f)
    by_line = {int(p.split(":")[1]): p for p in found}
    assert "unknown profile 'hgx-h100'" in by_line[line_of("gpuprov_profile=hgx-h100")]
    assert "duplicate address '10.0.2.1'" in by_line[line_of("gpu02 ")]
    assert "is not of branch 580" in by_line[line_of("nvidia_driver_package_version=570.1.1")]


def test_not_utf8(tmp_path: Path) -> None:
    f = tmp_path / "hosts.ini"
    f.write_bytes(b"[gpu]\ngpu\xff\n")
    assert "not UTF-8" in problems(f)[0]


def test_import_ini_writes_our_format(tmp_path: Path) -> None:
    out = convert_file(DEEPOPS, tmp_path / "site.yaml")
    a, b = load_inventory(DEEPOPS), load_inventory(out)
    assert list(a.hosts) == list(b.hosts)
    assert a.aliases == b.aliases and "slurm-node" in b.aliases  # --limit slurm-node kept
    for name in a.hosts:
        ha, hb = a.hosts[name], b.hosts[name]
        assert (ha.address, ha.role, ha.group, ha.vars, ha.domains, ha.ssh.user) == (
            hb.address, hb.role, hb.group, hb.vars, hb.domains, hb.ssh.user)  # fmt: skip
        sa, sb = ha.stack, hb.stack
        assert (sa is None) == (sb is None)
        if sa is not None:
            assert (sa.driver.version, sa.cuda, sa.dcgm) == (sb.driver.version, sb.cuda, sb.dcgm)


def test_import_ini_with_errors_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "inventory"
    bad.write_text(DEEPOPS.read_text().replace("gpuprov_profile=hgx-h100-8", "gpuprov_profile=x"))
    with pytest.raises(InputError):
        convert_file(bad, tmp_path / "site.yaml")
    assert not (tmp_path / "site.yaml").exists()


@pytest.mark.parametrize(
    ("pattern", "names"),
    [
        ("dgx[01:03]", ["dgx01", "dgx02", "dgx03"]),
        ("gpu-[a:c]", ["gpu-a", "gpu-b", "gpu-c"]),
        ("n[1:9:4]", ["n1", "n5", "n9"]),
        ("r[1:2]n[01:02]", ["r1n01", "r1n02", "r2n01", "r2n02"]),
        ("x[:2]", ["x0", "x1", "x2"]),
        ("plain", ["plain"]),
    ],
)
def test_ranges(pattern: str, names: list[str]) -> None:
    assert ranges.expand(pattern) == names


@pytest.mark.parametrize("bad", ["g[1]", "g[1:]", "g[1:2", "g]1:2[", "g[1:9:0]", "g[a:9]",
                                 "g[0:999999999]"])  # fmt: skip
def test_bad_ranges(bad: str) -> None:
    with pytest.raises(ranges.RangeError):
        ranges.expand(bad)


def test_a_group_variable_is_warned_about_once_not_per_host(tmp_path: Path) -> None:
    f = tmp_path / "hosts.ini"
    f.write_text(
        "[kube-node]\ngpu[01:20]\n[slurm-node]\ngpu[01:20]\n[slurm-node:vars]\n"
        "nvidia_driver_skip_reboot=yes\n[all:vars]\ngpuprov_profile=hgx-h100-8\n"
        "gpuprov_driver_branch=580\ngpuprov_driver_version=580.95.05\n"
    )
    c = load_inventory(f)
    skip = [w for w in c.warnings if "nvidia_driver_skip_reboot" in w.message]
    assert len(skip) == 1 and str(skip[0].location) == f"{f}:6:1"


def test_aliases_are_checked(tmp_path: Path) -> None:
    f = tmp_path / "site.yaml"
    f.write_text(
        "cluster: {stack: {driver: {branch: '580', version: 580.95.05}}}\n"
        "groups:\n  gpu:\n    profile: hgx-h100-8\n    hosts:\n      g1: {}\n"
        "aliases:\n  slurm-node: [g1, g9]\n  bad name: [g1]\n  x: g1\n"
    )
    found = problems(f)
    assert any(p.startswith(f"{f}:8:") and "'g9' is not a host" in p for p in found), found
    assert any("alias name 'bad name'" in p for p in found)
    assert any("aliases.x: expected a list of host names" in p for p in found)
    f.write_text(f.read_text().replace(", g9]", "]").replace("  bad name: [g1]\n  x: g1\n", ""))
    c = load_inventory(f)
    assert [h.name for h in c.select(["slurm-*"])] == ["g1"]
