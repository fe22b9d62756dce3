"""What a bundle carries per OS, derived from the inventory by the deploys' own functions
and the data tables (no network: the closure is apt's, tested in test_build.py)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from gpuprov.bundle.packages import wanted_packages
from gpuprov.errors import InputError
from gpuprov.inventory.loader import load_inventory


def inventory(tmp_path: Path, *, stack: str = "", groups: str = "", base: str = "minimal",
              targets: tuple[str, ...] = ("debian12",), mirror_os: str = "") -> Path:  # fmt: skip
    (tmp_path / "k.gpg").write_text("x")
    target_text = "".join(
        f"      {t}:\n        sources:\n          - {{url: http://x.invalid/{t}, "
        f"{'' if t.startswith('rhel') else 'suites: [s], components: [main], '}keyring: k.gpg}}\n"
        f"        base: {base}\n"
        for t in targets
    )
    text = f"""\
cluster:
  stack:
    os: debian12
    driver: {{branch: "580", version: "580.95.05"}}
    cuda: ["12.8", "13.0"]
    cuda_default: "12.8"
    container_runtime: containerd
{stack}  mirror: {{host: mirror01}}
  bundle:
    targets:
{target_text}{mirror_os}groups:
  hgx:
    profile: hgx-h100-8
    hosts:
      gpu001: {{address: 10.0.0.1}}
      gpu002: {{address: 10.0.0.2}}
{groups}  mirror:
    role: mirror
    hosts:
      mirror01: {{address: 10.0.0.5}}
"""
    path = tmp_path / "inv.yaml"
    path.write_text(text)
    return path


def test_gpu_and_mirror_packages_for_debian(tmp_path):
    wanted = wanted_packages(load_inventory(inventory(tmp_path)))
    deb = wanted["debian12"]
    assert deb.wanted == {
        # The driver transaction at the pinned version (HGX H100: NVSwitch -> fabric manager).
        "nvidia-driver-580-open": "580.95.05-1",
        "nvidia-kernel-open-580": "580.95.05-1",
        "nvidia-persistenced": "580.95.05-1",
        "nvidia-fabricmanager": "580.95.05-1",
        "cuda-toolkit-12-8": None,
        "cuda-toolkit-13-0": None,
        "containerd": None,
        "nvidia-container-toolkit": None,
        # DCGM follows the default toolkit's major (12.8), as deploys/dcgm.py does.
        "datacenter-gpu-manager-4-cuda12": None,
        "linux-headers-amd64": None,  # no facts: the default flavour's headers
        "nginx": None,
        "docker-registry": None,
    }
    assert "nvidia-driver-580-open=580.95.05-1" in deb.specs()
    assert deb.notes["nvidia-driver-580-open"] == ["gpu001", "gpu002"]
    # Both GPU hosts need the same transaction; the mirror host its own.
    assert len(deb.transactions()) == 2
    assert ["docker-registry", "nginx"] in deb.transactions()


def test_hosts_pinned_differently_are_resolved_apart(tmp_path):
    """A canary group on another driver branch with proprietary modules: its packages
    conflict with the others', so each host's set is its own apt transaction."""
    groups = textwrap.indent(textwrap.dedent("""\
        canary:
          profile: hgx-h100-8
          stack: {driver: {branch: "570", version: "570.133.20", modules: proprietary}}
          hosts:
            gpu009: {address: 10.0.0.9}
    """), "  ")  # fmt: skip
    deb = wanted_packages(load_inventory(inventory(tmp_path, groups=groups)))["debian12"]
    t580, t570 = (next(t for t in deb.transactions() if f"nvidia-persistenced={v}-1" in t)
                  for v in ("580.95.05", "570.133.20"))  # fmt: skip
    assert (
        "nvidia-driver-580-open=580.95.05-1" in t580
        and "nvidia-kernel-open-580=580.95.05-1" in t580
    )
    assert "cuda-drivers-570=570.133.20-1" in t570 and "nvidia-kernel-570=570.133.20-1" in t570
    assert "nvidia-fabricmanager-570=570.133.20-1" in t570
    assert deb.wanted["nvidia-persistenced"] is None  # pinned differently per host


def test_facts_name_each_kernel_and_skip_hosts_with_headers(tmp_path):
    facts = {
        "gpu001": {
            "ok": True,
            "os": "debian12",
            "kernel": "6.1.0-31-amd64",
            "headers_installed": False,
        },
        "gpu002": {
            "ok": True,
            "os": "debian12",
            "kernel": "6.1.0-40-amd64",
            "headers_installed": True,
        },
        "mirror01": {
            "ok": True,
            "os": "debian12",
            "kernel": "6.1.0-9-amd64",
            "headers_installed": False,
        },
    }
    (tmp_path / "facts.json").write_text(json.dumps(facts))
    deb = wanted_packages(load_inventory(inventory(tmp_path, base="{facts: facts.json}")))[
        "debian12"
    ]
    headers = sorted(n for n in deb.wanted if n.startswith("linux-headers"))
    # gpu002 has its headers (the driver deploy installs none there); the mirror host
    # builds no modules.
    assert headers == ["linux-headers-6.1.0-31-amd64"]
    # A host the facts do not cover gets the default flavour's headers.
    del facts["gpu001"]
    (tmp_path / "facts.json").write_text(json.dumps(facts))
    deb = wanted_packages(load_inventory(inventory(tmp_path, base="{facts: facts.json}")))[
        "debian12"
    ]
    assert deb.hosts["gpu001"]["linux-headers-amd64"] is None
    assert not any(n.startswith("linux-headers") for n in deb.hosts["gpu002"])


def test_bad_kernel_in_facts_is_refused(tmp_path):
    (tmp_path / "facts.json").write_text(json.dumps({"gpu001": {"kernel": "6.1; rm -rf /"}}))
    with pytest.raises(InputError, match="gpu001: bad kernel release"):
        wanted_packages(load_inventory(inventory(tmp_path, base="{facts: facts.json}")))


def test_no_nvswitch_no_fabric_manager_and_runtime_none(tmp_path):
    groups = textwrap.indent(textwrap.dedent("""\
        pcie:
          profile: h100-pcie
          stack: {container_runtime: none, dcgm: false}
          hosts:
            gpu101: {address: 10.0.1.1}
    """), "  ")  # fmt: skip
    path = inventory(tmp_path, groups=groups)
    c = load_inventory(path)
    for name in ("gpu001", "gpu002"):  # keep only the PCIe host
        del c.hosts[name]
    deb = wanted_packages(c)["debian12"]
    assert "nvidia-fabricmanager" not in deb.wanted
    assert not any(n.startswith(("containerd", "docker.io", "datacenter-gpu")) for n in deb.wanted)
    assert "nvidia-container-toolkit" in deb.wanted  # the deploy installs it either way


def test_each_os_gets_its_own_names(tmp_path):
    groups = textwrap.indent(textwrap.dedent("""\
        ubuntu:
          profile: hgx-h100-8
          stack: {os: ubuntu2204}
          hosts:
            gpu201: {address: 10.0.2.1}
        rhel:
          profile: hgx-h100-8
          stack: {os: rhel9}
          hosts:
            gpu301: {address: 10.0.3.1}
    """), "  ")  # fmt: skip
    path = inventory(tmp_path, groups=groups, targets=("debian12", "ubuntu2204", "rhel9"),
                     mirror_os="    mirror_os: rhel9\n")  # fmt: skip
    wanted = wanted_packages(load_inventory(path))
    assert wanted["ubuntu2204"].wanted["nvidia-driver-580-open"] == "580.95.05-0ubuntu1"
    assert "linux-headers-generic" in wanted["ubuntu2204"].wanted
    rhel = wanted["rhel9"]
    assert rhel.manager == "dnf"
    assert rhel.wanted["nvidia-driver:580-open"] is None  # a module stream, not pinned
    assert rhel.wanted["nvidia-driver"] == "580.95.05-1.el9"  # its main package is
    assert rhel.wanted["kmod-nvidia-open-dkms"] == "580.95.05-1.el9"
    assert rhel.wanted["nvidia-fabric-manager"] == "580.95.05-1"
    assert {"kernel-devel", "nginx"} <= set(rhel.wanted) and "docker-registry" not in rhel.wanted
    assert "nginx" not in wanted["debian12"].wanted  # the mirror host is RHEL here


def test_host_on_an_os_without_target_is_named(tmp_path):
    groups = textwrap.indent(textwrap.dedent("""\
        ubuntu:
          profile: hgx-h100-8
          stack: {os: ubuntu2404}
          hosts:
            gpu201: {address: 10.0.2.1}
    """), "  ")  # fmt: skip
    with pytest.raises(InputError) as info:
        wanted_packages(load_inventory(inventory(tmp_path, groups=groups)))
    [problem] = info.value.problems
    assert "gpu201 runs ubuntu2404, which cluster.bundle.targets does not list" in problem.message
    assert problem.location.line > 0


def test_inventory_without_bundle_section_is_bad_input(tmp_path):
    path = tmp_path / "inv.yaml"
    path.write_text(
        inventory(tmp_path).read_text().split("  bundle:")[0]
        + "groups:\n  m:\n    role: mirror\n    hosts:\n      mirror01: {}\n"
    )
    with pytest.raises(InputError, match="no `cluster.bundle.targets:`"):
        wanted_packages(load_inventory(path))


def test_images_are_every_hosts_verify_image_and_the_bundle_list(tmp_path):
    from gpuprov.bundle.build import image_refs

    groups = textwrap.indent(textwrap.dedent("""\
        more:
          profile: hgx-h100-8
          vars: {gpuprov_verify_image: "nvcr.io/nvidia/cuda:12.8.0-base-ubuntu24.04"}
          hosts:
            gpu010: {address: 10.0.0.10}
            gpu011: {address: 10.0.0.11, vars: {gpuprov_verify_image: "registry.local:5000/t/x:1"}}
    """), "  ")  # fmt: skip
    path = inventory(tmp_path, groups=groups)
    path.write_text(
        path.read_text().replace(
            "groups:\n", '    images: ["docker.io/library/busybox:1.36"]\ngroups:\n', 1
        )
    )
    assert image_refs(load_inventory(path)) == [
        "docker.io/library/busybox:1.36",
        "nvcr.io/nvidia/cuda:12.8.0-base-ubuntu24.04",
        "registry.local:5000/t/x:1",
    ]
    path.write_text(path.read_text().replace("registry.local:5000/t/x:1", "Bad Image; rm -rf /"))
    # The loader refuses it, with its line (host vars are checked before anything runs);
    # image_refs checks again for inventories built in code.
    with pytest.raises(
        InputError, match="gpu011.vars.gpuprov_verify_image: expected an image reference"
    ):
        image_refs(load_inventory(path))


def test_a_rhel_source_has_no_suites(tmp_path):
    """A dnf repository is its baseurl: suites/components there are refused by name."""
    path = inventory(tmp_path, targets=("debian12", "rhel9"))
    path.write_text(path.read_text().replace("x.invalid/rhel9, ", "x.invalid/rhel9, suites: [s], "))
    with pytest.raises(InputError) as info:
        load_inventory(path)
    [problem] = info.value.problems
    assert (
        "targets.rhel9.sources[0].suites: a dnf (RHEL) repository has no suites" in problem.message
    )
    assert problem.location.line is not None


def test_a_rhel_target_takes_no_dpkg_status(tmp_path):
    (tmp_path / "status").write_text("")
    path = inventory(tmp_path, targets=("debian12", "rhel9"), base="{dpkg_status: status}")
    with pytest.raises(InputError) as info:
        load_inventory(path)
    [problem] = info.value.problems
    assert "targets.rhel9.base.dpkg_status: a RHEL target has no dpkg status" in problem.message
