"""`gpuprov bundle build` for an Ubuntu 24.04 GPU cluster, on recorded indexes.

Ubuntu's archive and NVIDIA's Ubuntu CUDA repositories are not reachable here, so their
recorded index excerpts (tests/fixtures/ubuntu/, SOURCES.md says what is recorded and
what is reconstructed) are served on loopback the way the upstreams serve them
(recorded_index.py): a noble archive (dists/noble/main) and a flat CUDA repository,
each signed by a test key standing in for the real archive key. The build then runs the
same apt code path as for Debian: an isolated apt root, the noble minimal install as its
base, one apt transaction per host, a signed `apt/ubuntu2404/` repository in the bundle.

No Debian archive is needed (no `debian_archive` marker); the wheel step uses pip, as
every full build does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gpuprov.aptrepo import generate_key, verify_repo
from gpuprov.bundle import layout
from gpuprov.bundle.aptroot import AptRoot
from gpuprov.bundle.build import BuildOptions
from gpuprov.inventory.bundle import AptSourceSpec
from gpuprov.inventory.loader import load_inventory
from gpuprov.testbed.rootfs import cache_dir

from .builds import assert_refused_cleanly, build, packages_index, serve
from .recorded_index import (
    NOBLE_HEADERS,
    NOBLE_MINBASE,
    NVIDIA_550,
    build_debs,
    publish_archive,
    publish_flat,
    read_stanzas,
)

for tool in ("apt-get", "apt-ftparchive", "gpg", "gpgv", "dpkg-deb"):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} not installed (make system-deps)", allow_module_level=True)

DRIVER = "550.54.15"
KERNEL = "6.8.0-31-generic"  # noble's release kernel (the headers stanzas' version)
# What the deploys install on gpu001 (HGX H100: NVSwitch, open modules), Ubuntu's names.
OPEN_SET = [
    f"nvidia-driver-550-open={DRIVER}-0ubuntu1",
    f"nvidia-kernel-open-550={DRIVER}-0ubuntu1",
    f"nvidia-compute-utils-550={DRIVER}-0ubuntu1",
    f"nvidia-fabricmanager-550={DRIVER}-1",
    "nvidia-container-toolkit",
    "datacenter-gpu-manager-4-cuda12",
]


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    """The recorded noble archive and NVIDIA CUDA repository on loopback."""
    work = tmp_path_factory.mktemp("ubuntu-upstream")
    debs = cache_dir() / "standins-recorded-ubuntu"
    ubuntu_key = generate_key(work / "ubuntu-gnupg", "stand-in Ubuntu archive", "ubuntu@gpuprov.invalid")  # fmt: skip
    nvidia_key = generate_key(work / "nvidia-gnupg", "stand-in NVIDIA CUDA", "cuda@gpuprov.invalid")  # fmt: skip
    noble = read_stanzas(NOBLE_MINBASE) + read_stanzas(NOBLE_HEADERS)
    publish_archive(build_debs(noble, debs), work / "ubuntu", "noble", ubuntu_key)
    publish_flat(build_debs(read_stanzas(NVIDIA_550), debs), work / "cuda" / "ubuntu2404" / "x86_64", nvidia_key)  # fmt: skip
    bundle_key = generate_key(work / "bundle-gnupg", "Site bundles", "bundle@gpuprov.invalid")
    with serve(work / "ubuntu") as ubuntu_url, serve(work / "cuda") as cuda_url:
        yield {
            "work": work,
            "cache": work / "cache",
            "ubuntu_url": ubuntu_url,
            "ubuntu_keyring": ubuntu_key.export_public(work / "ubuntu.gpg"),
            "cuda_url": f"{cuda_url}/ubuntu2404/x86_64",
            "cuda_keyring": nvidia_key.export_public(work / "cuda.gpg"),
            "key": bundle_key,
            "keyring": bundle_key.export_public(work / "bundle.gpg"),
        }


def write_inventory(up: dict, path: Path, *, cuda: str = "[]") -> Path:
    """gpu001: open modules, its kernel known from `gpuprov facts`; gpu002 (canary):
    proprietary modules, no facts (the default flavour's headers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.parent / "facts.json").write_text(
        json.dumps({"gpu001": {"ok": True, "kernel": KERNEL, "headers_installed": False}})
    )
    path.write_text(f"""\
cluster:
  name: ubuntu-bundle
  stack:
    os: ubuntu2404
    driver: {{branch: "550", version: "{DRIVER}"}}
    cuda: {cuda}
    container_runtime: none
    dcgm: true
  bundle:
    targets:
      ubuntu2404:
        sources:
          - url: {up["ubuntu_url"]}
            suites: [noble]
            components: [main]
            keyring: {up["ubuntu_keyring"]}
          - url: {up["cuda_url"]}
            suites: ["/"]
            keyring: {up["cuda_keyring"]}
        base: {{facts: facts.json}}
    python: ["3.11"]
groups:
  hgx:
    profile: hgx-h100-8
    hosts:
      gpu001: {{address: 10.0.0.11}}
  canary:
    profile: hgx-h100-8
    stack: {{driver: {{branch: "550", version: "{DRIVER}", modules: proprietary}}}}
    hosts:
      gpu002: {{address: 10.0.0.12}}
""")
    return path


@pytest.fixture(scope="module")
def bundle(upstream):
    inv = write_inventory(upstream, upstream["work"] / "site" / "site.yaml")
    out = upstream["work"] / "bundle"
    return {"out": out, "result": build(upstream, inv, out)}


def test_bundle_carries_the_ubuntu_closure_signed(bundle, upstream):
    out = bundle["out"]
    assert layout.verify_signature(out, upstream["keyring"]) == upstream["key"].fingerprint
    repo = out / "apt/ubuntu2404"
    assert [p for p in verify_repo(repo, upstream["keyring"]) if p.severity == "error"] == []
    index = packages_index(repo)
    for spec in OPEN_SET:
        name, _, version = spec.partition("=")
        assert name in index, f"{name} missing from the bundle's repository"
        assert not version or version in index[name], (name, index[name])
    # apt resolved the closure: the open meta package's dependencies came along.
    for dep in ("nvidia-dkms-550-open", "nvidia-kernel-source-550-open", "libnvidia-compute-550",
                "nvidia-firmware-550-550.54.15", "libnvidia-container1", "datacenter-gpu-manager-4-core"):  # fmt: skip
        assert dep in index, dep
    # The canary group (proprietary modules) is its own transaction, Ubuntu's names:
    # nvidia-driver-550 and nvidia-dkms-550, never cuda-drivers-550 (versioned -1) or
    # nvidia-kernel-550 (not in NVIDIA's Ubuntu repository).
    for name in ("nvidia-driver-550", "nvidia-dkms-550", "nvidia-kernel-source-550"):
        assert index.get(name) == {f"{DRIVER}-0ubuntu1"}, name
    assert "cuda-drivers-550" not in index and "nvidia-kernel-550" not in index
    # Kernel headers in Ubuntu's naming: gpu001's running kernel (facts), and the
    # default flavour's meta package for gpu002 (no facts), with what they pull in.
    for name in (f"linux-headers-{KERNEL}", "linux-headers-6.8.0-31", "linux-headers-generic"):
        assert name in index, name
    # The base was noble's minimal install: what it holds is not carried again.
    assert not {"libc6", "coreutils", "libssl3t64", "libseccomp2", "apt"} & set(index)
    ours = ("nvidia", "libnvidia", "xserver-xorg-video-nvidia", "linux-headers", "datacenter-gpu")
    assert [n for n in index if not n.startswith(ours)] == []
    assert bundle["result"].packages["ubuntu2404"]  # the build reports the closure


def _installed_status(path: Path) -> str:
    """The recorded noble minbase as a dpkg status file (each paragraph installed)."""
    return "\n\n".join(
        p.replace("\n", "\nStatus: install ok installed\n", 1)
        for p in path.read_text().strip().split("\n\n")
    ) + "\n"  # fmt: skip


@pytest.mark.parametrize(
    "specs",
    [
        OPEN_SET + [f"linux-headers-{KERNEL}"],
        [f"nvidia-driver-550={DRIVER}-0ubuntu1", f"nvidia-dkms-550={DRIVER}-0ubuntu1",
         f"nvidia-compute-utils-550={DRIVER}-0ubuntu1", "linux-headers-generic"],
    ],
    ids=["open", "proprietary"],
)  # fmt: skip
def test_apt_installs_the_driver_set_from_the_bundle_alone(bundle, upstream, tmp_path, specs):
    """A noble host (the recorded minbase as its dpkg status) whose only source is the
    bundle's repository, trusted through Signed-By the bundle key: apt resolves each
    host's driver set and downloads it, every file checked against the signed index."""
    with serve(bundle["out"] / "apt/ubuntu2404") as url:  # as the mirror host serves it
        source = AptSourceSpec(url, ("gpuprov",), ("main",), upstream["keyring"], None)
        root = AptRoot(tmp_path / "root", tmp_path / "archives", "amd64", (source,))
        root.prepare()
        root.set_status(_installed_status(NOBLE_MINBASE))
        root.update("the bundle")
        names = {ref.name for ref in root.closure("the bundle", specs)}
        assert {s.partition("=")[0] for s in specs} <= names
        root.download("the bundle", specs)
    fetched = {p.name.split("_")[0] for p in (tmp_path / "archives").glob("*.deb")}
    assert fetched == names


def test_package_missing_upstream_fails_the_build_naming_it(upstream, tmp_path):
    """A CUDA toolkit the recorded CUDA repository lacks: `gpuprov bundle build` stops on
    the connected side, names the package, exits 1 without a traceback and writes no
    bundle."""
    inv = write_inventory(upstream, tmp_path / "site.yaml", cuda='["12.4"]')
    out = tmp_path / "bundle"
    done = subprocess.run(
        [sys.executable, "-m", "gpuprov.cli", "bundle", "build", str(inv), "--to", str(out),
         "--key-home", str(upstream["key"].home), "--cache", str(upstream["cache"])],
        capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "250"},
    )  # fmt: skip
    assert_refused_cleanly(
        done, out, tmp_path,
        "ubuntu2404: apt cannot resolve the bundle's packages",
        "Unable to locate package cuda-toolkit-12-4",
    )  # fmt: skip


def test_a_hosts_dpkg_status_as_base_gives_the_minimal_closure(upstream, tmp_path):
    """`base: {dpkg_status: FILE}` with an Ubuntu host's status (the recorded debootstrap
    of noble is what a fresh minimal host has): read_status_file takes Ubuntu's fields,
    and apt resolves the same closure per host as on the `minimal` base it computes from
    the indexes (dry run: the package step only, nothing downloaded)."""
    from gpuprov.bundle.build import BuildResult, apt_target
    from gpuprov.bundle.packages import wanted_packages

    status = tmp_path / "gpu001.status"
    status.write_text(_installed_status(NOBLE_MINBASE))
    closures = {}
    for base in ("{facts: facts.json}", "{facts: facts.json, dpkg_status: gpu001.status}"):
        inv = write_inventory(upstream, tmp_path / "site.yaml")
        inv.write_text(inv.read_text().replace("base: {facts: facts.json}", f"base: {base}"))
        cluster = load_inventory(inv)
        assert cluster.bundle is not None
        pkgs = wanted_packages(cluster)["ubuntu2404"]
        result = BuildResult(out=None)
        opts = BuildOptions(out=tmp_path / "unused", cache=upstream["cache"], dry_run=True)
        apt_target(
            cluster.bundle.targets["ubuntu2404"], pkgs, opts, None, None, result, lambda _: None
        )
        closures[base] = result.packages["ubuntu2404"]
    minimal, host = closures.values()
    assert minimal == host and len(host) == 30, host  # both hosts' transactions
