"""`gpuprov bundle build` end to end with real tools: apt resolving against Debian's archive
(the mirror this machine's apt uses) plus the stand-in NVIDIA repository served on
loopback, skopeo pulling a tiny image (made offline with umoci) from a registry on
loopback, a model directory, and pip for gpuprov's wheels.

Marked `debian_archive`: these tests need Debian's archive (CI has it). Downloads are
cached under $GPUPROV_CACHE/bundle, so only the first run fetches (~20 MB of .debs).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from oci_images import tiny_image_layout

from gpuprov.aptrepo import generate_key, publish_repo
from gpuprov.bundle import layout
from gpuprov.bundle.aptroot import ResolveError
from gpuprov.testbed.rootfs import cache_dir, debian_mirror

from .builds import assert_refused_cleanly, build, packages_index, serve

pytestmark = pytest.mark.debian_archive

for tool in ("apt-get", "gpg", "skopeo", "umoci", "docker-registry", "dpkg-deb"):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} not installed (make system-deps)", allow_module_level=True)

DRIVER = "580.95.05"
CANARY = "570.133.20"  # one group on another branch, proprietary modules
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
# What the deploys install on the test inventory's hosts (gpu: HGX H100 = NVSwitch).
GPU_PACKAGES = [
    f"nvidia-driver-580-open={DRIVER}-1",
    f"nvidia-kernel-open-580={DRIVER}-1",
    f"nvidia-persistenced={DRIVER}-1",
    f"nvidia-fabricmanager={DRIVER}-1",
    "nvidia-container-toolkit",
    "datacenter-gpu-manager-4-cuda13",
    "containerd",
]
MIRROR_PACKAGES = ["nginx", "docker-registry"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Upstreams on loopback (stand-in NVIDIA repo, a registry with a tiny image), a model
    directory, the bundle key and the cache; torn down after the module."""
    from gpuprov.testbed.standins import build_standins

    work = tmp_path_factory.mktemp("bundle-site")
    cache = cache_dir()
    debs = build_standins(cache / "standins", releases=(CANARY, DRIVER))
    nvidia_key = generate_key(work / "nvidia-gnupg", "stand-in NVIDIA", "nvidia@gpuprov.invalid")
    publish_repo(
        [d for d in debs if not d.name.startswith("gpuprov-gpu-sim_")],
        work / "nvidia",
        suite="stable",
        key=nvidia_key,
    )
    nvidia_keyring = nvidia_key.export_public(work / "nvidia.gpg")
    served = contextlib.ExitStack()
    nvidia_url = served.enter_context(serve(work / "nvidia"))

    # A tiny image made offline, pushed to a registry on loopback.
    port = _free_port()
    (work / "registry.yml").write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {work / 'registry'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\nlog:\n  accesslog:\n    disabled: false\n"
    )
    reglog = open(work / "registry.log", "w")  # noqa: SIM115 - closed at teardown
    registry = subprocess.Popen(
        ["docker-registry", "serve", str(work / "registry.yml")], stdout=reglog, stderr=reglog
    )
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        img = tiny_image_layout(work, "hello from a bundle\n")
        image = f"127.0.0.1:{port}/test/tiny:1.0"
        subprocess.run(
            ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{img}:latest", f"docker://{image}"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip

        model = work / "model"
        model.mkdir()
        (model / "config.json").write_text('{"model_type": "tiny"}\n')
        (model / "weights.bin").write_bytes(bytes(range(256)) * 64)

        bundle_key = generate_key(work / "bundle-gnupg", "Site bundles", "bundle@gpuprov.invalid")
        yield {
            "work": work,
            "cache": cache / "bundle",
            "nvidia_url": nvidia_url,
            "nvidia_keyring": nvidia_keyring,
            "image": image,
            "registry_log": work / "registry.log",
            "model": model,
            "key": bundle_key,
            "keyring": bundle_key.export_public(work / "bundle.gpg"),
        }
    finally:
        registry.terminate()
        registry.wait(timeout=10)
        reglog.close()
        served.close()


def write_inventory(site: dict, path: Path, *, driver: str = DRIVER, base: str = "minimal") -> Path:
    """The site's inventory. The image is the GPU hosts' `gpuprov_verify_image` (what
    `gpuprov verify` runs), not listed in `bundle.images`: the build finds it there."""
    mirror = debian_mirror()
    path.write_text(f"""\
cluster:
  name: bundle-test
  stack:
    os: debian12
    driver: {{branch: "580", version: "{driver}"}}
    container_runtime: containerd
    dcgm: true
  mirror: {{host: mirror01}}
  bundle:
    targets:
      debian12:
        sources:
          - url: {mirror}
            suites: [bookworm, bookworm-updates]
            components: [main]
            keyring: {DEBIAN_KEYRING}
          - url: {mirror.rstrip("/")}-security
            suites: [bookworm-security]
            components: [main]
            keyring: {DEBIAN_KEYRING}
          - url: {site["nvidia_url"]}
            suites: [stable]
            components: [main]
            keyring: {site["nvidia_keyring"]}
        base: {base}
    images: []
    insecure_registries: ["{site["image"].split("/")[0]}"]
    models:
      - {{repo: acme/tiny, source: {site["model"]}, revision: main}}
    python: ["3.11"]
groups:
  hgx:
    profile: hgx-h100-8
    vars: {{gpuprov_verify_image: "{site["image"]}"}}
    hosts:
      gpu001: {{address: 10.0.0.11}}
  canary:
    profile: hgx-h100-8
    stack: {{driver: {{branch: "570", version: "{CANARY}", modules: proprietary}}}}
    hosts:
      gpu002: {{address: 10.0.0.12}}
  mirror:
    role: mirror
    hosts:
      mirror01: {{address: 10.0.0.5}}
""")
    return path


@pytest.fixture(scope="module")
def full(site):
    """One full bundle (and its build result) shared by the tests below."""
    inv = write_inventory(site, site["work"] / "site.yaml")
    out = site["work"] / "bundle-1"
    result = build(site, inv, out)
    return {"inventory": inv, "out": out, "result": result}


def test_full_bundle_is_signed_and_holds_every_kind(full, site):
    out = full["out"]
    assert layout.verify_signature(out, site["keyring"]) == site["key"].fingerprint
    manifest = layout.load_manifest(out)
    assert manifest.base is None
    on_disk = {f.path: f for f in layout.scan_tree(out)}
    assert on_disk == manifest.by_path()  # every file listed, nothing unlisted
    assert {f.kind for f in manifest.files} == {"apt", "oci", "model", "wheel", "key"}

    index = packages_index(out / "apt/debian12")
    for spec in GPU_PACKAGES + MIRROR_PACKAGES:
        name, _, version = spec.partition("=")
        assert name in index, f"{name} missing from the bundle's repository"
        assert not version or version in index[name], (name, index[name])
    # Dependencies came along: apt resolved the closure (runc for containerd, the
    # stand-in driver's utils/compute libraries, nginx's common files).
    for dep in ("runc", "nvidia-utils-580", "libnvidia-compute-580", "nginx-common"):
        assert dep in index
    # The canary group's transaction: another branch, proprietary modules (they conflict
    # with the open 580 ones, so apt resolved it apart).
    for name in (
        "cuda-drivers-570",
        "nvidia-driver-570",
        "nvidia-kernel-570",
        "nvidia-fabricmanager-570",
    ):
        assert f"{CANARY}-1" in index[name], name
    # Kernel headers: no facts given, so the default flavour's meta package.
    assert "linux-headers-amd64" in index
    # The repository itself is signed with the bundle key.
    from gpuprov.aptrepo import verify_repo

    assert [
        p for p in verify_repo(out / "apt/debian12", site["keyring"]) if p.severity == "error"
    ] == []

    oci = json.loads((out / "oci/index.json").read_text())
    refs = [m["annotations"][layout_ref()] for m in oci["manifests"]]
    assert refs == [site["image"]]
    assert (out / "models/repos/models/acme/tiny/refs.json").is_file()
    reqs = (out / "wheels/requirements.txt").read_text()
    assert "gpuprov==0.1.0" in reqs and "--hash=sha256:" in reqs and "pyinfra==" in reqs
    assert (out / "wheels/requirements-3.11.txt").read_text() == reqs
    assert "\npip==" in reqs  # runs from its wheel on a host without python3-pip
    # gpuprov's wheel holds exactly the checkout's modules (no stale build/ leftovers).
    import zipfile

    from gpuprov.mirror.wheelhouse import repo_root

    [own] = (out / "wheels").glob("gpuprov-*.whl")
    top = {"cli": "cli", "deploys": "deploys", "templates": "templates"}
    for name in zipfile.ZipFile(own).namelist():
        if name.endswith(".py"):
            parts = name.split("/")
            rel = Path(top[parts[1]], *parts[2:]) if parts[1] in top else Path(name)
            assert (repo_root() / rel).is_file(), f"{name} is not in the checkout"
    assert not list(site["work"].glob(".bundle-1.building-*"))  # no staging left behind


def layout_ref() -> str:
    from gpuprov.bundle.images import REF_NAME

    return REF_NAME


def test_rerun_fetches_nothing_new(full, site):
    """Second build, same inventory and cache: no .deb, blob or wheel is fetched again."""
    blob_gets = _blob_gets(site["registry_log"])
    archives = site["cache"] / "apt" / "debian12-archives"
    before = {p.name: p.stat().st_mtime_ns for p in archives.glob("*.deb")}
    out = site["work"] / "bundle-again"
    result = build(site, full["inventory"], out)
    assert result.fetches == []
    assert {p.name: p.stat().st_mtime_ns for p in archives.glob("*.deb")} == before
    assert _blob_gets(site["registry_log"]) == blob_gets
    again = layout.load_manifest(out).by_path()
    first = layout.load_manifest(full["out"]).by_path()
    pool = [p for p in first if "/pool/" in p]
    assert pool and all(again[p].sha256 == first[p].sha256 for p in pool)


def _blob_gets(log: Path) -> int:
    return sum(
        1 for line in log.read_text().splitlines() if '"GET /v2/' in line and "/blobs/" in line
    )


def test_since_carries_only_the_changed_files(full, site):
    model2 = site["work"] / "model2"
    model2.mkdir()
    (model2 / "config.json").write_text('{"model_type": "second"}\n')
    inv = site["work"] / "site-2.yaml"
    text = (
        write_inventory(site, inv)
        .read_text()
        .replace("    python:", f"      - {{repo: acme/second, source: {model2}}}\n    python:")
    )
    inv.write_text(text)
    out = site["work"] / "bundle-2"
    base = layout.load_manifest(full["out"])
    result = build(site, inv, out, since=full["out"] / "manifest.json")
    diff = layout.load_manifest(out)
    assert diff.base == base.id
    assert layout.verify_signature(out, site["keyring"]) == site["key"].fingerprint
    carried = {f.path for f in layout.carried_files(diff, base)}
    on_disk = {f.path for f in layout.scan_tree(out)}
    assert on_disk == carried and result.carried == len(carried)
    assert layout.missing_from_tree(diff, out, base) == []
    # The new model is carried; unchanged pool files and wheels are not.
    assert any(p.startswith("models/repos/models/acme/second/") for p in carried)
    assert not any("/pool/" in p or p.startswith("wheels/") for p in carried)
    # Base + differential gives the full new tree: every listed file is in one of them.
    for f in diff.files:
        src = out / f.path if f.path in carried else full["out"] / f.path
        assert layout.hash_file(src)[1] == f.sha256, f.path


def gpuprov(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpuprov.cli", *map(str, args)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "250"},
    )  # fmt: skip


def test_dry_run_downloads_nothing(site, tmp_path):
    """A fresh cache: the dry run lists every .deb, the image and the wheels with sizes,
    and leaves no package, blob or wheel behind (only the package indexes)."""
    inv = write_inventory(site, tmp_path / "site.yaml")
    cache = tmp_path / "cache"
    blob_gets = _blob_gets(site["registry_log"])
    done = gpuprov("bundle", "build", inv, "--dry-run", "--cache", cache)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    apt = [line for line in lines if line.startswith("would fetch apt ")]
    names = {line.split()[3].split("/")[1].split("_")[0] for line in apt}
    assert {"nvidia-driver-580-open", "containerd", "nginx", "runc"} <= names
    assert all(line.endswith(("KiB)", "MiB)", " B)")) for line in apt)
    assert any(line.startswith(f"would fetch oci   {site['image']} (") for line in lines)
    assert any(line.startswith("would fetch wheel pyinfra-") for line in lines)
    assert any(
        line.startswith("debian12: ") and "packages in the closure" in line for line in lines
    )
    listed = [line for line in lines[:-1] if line.startswith("would fetch ")]
    assert all(line.endswith(("B)", "KiB)", "MiB)", "GiB)")) for line in listed)  # sized
    assert re.fullmatch(rf"would fetch {len(listed)} files, [0-9.]+ MiB", lines[-1])
    assert list(cache.rglob("*.deb")) == [] and list(cache.rglob("*.whl")) == []
    assert not (cache / "oci").exists()
    assert _blob_gets(site["registry_log"]) == blob_gets
    assert not list(tmp_path.glob(".*building*"))


def test_upstream_signed_by_another_key_is_refused(site, tmp_path):
    """The stand-in repository checked against Debian's keyring: apt refuses its index and
    the build names the source, before anything is resolved."""
    inv = write_inventory(site, tmp_path / "site.yaml")
    inv.write_text(inv.read_text().replace(str(site["nvidia_keyring"]), str(DEBIAN_KEYRING)))
    with pytest.raises(ResolveError) as info:
        build(site, inv, tmp_path / "bundle")
    message = str(info.value)
    assert "apt-get update of the upstream sources failed" in message
    assert site["nvidia_url"] in message and "not signed" in message
    assert not (tmp_path / "bundle").exists()


def test_unresolvable_package_fails_the_build_naming_it(site, tmp_path):
    """A driver version the upstream repository lacks: the build fails on the connected
    side, names the package and version, exits 1 (not bad input: the upstream lacks it)
    and leaves no bundle behind."""
    inv = write_inventory(site, tmp_path / "site.yaml", driver="580.65.06")
    out = tmp_path / "bundle"
    done = gpuprov(
        "bundle",
        "build",
        inv,
        "--to",
        out,
        "--key-home",
        site["key"].home,
        "--cache",
        site["cache"],
    )
    assert_refused_cleanly(
        done, out, tmp_path, "Version '580.65.06-1' for 'nvidia-driver-580-open' was not found"
    )


@pytest.mark.host
def test_closure_installs_offline_from_the_bundle_alone(full, site):
    """The Debian test-bed root filesystem (a debootstrap minbase, as a fresh host is) in
    a chroot with no network and the bundle's repository as its only source: apt installs
    the GPU node's and the mirror host's packages from it."""
    from gpuprov.testbed.rootfs import ensure_rootfs

    if os.geteuid() != 0:
        pytest.skip("needs root (overlay mount, chroot)")
    rootfs = ensure_rootfs()
    work = site["work"] / "chroot"
    for d in ("upper", "work", "merged"):
        (work / d).mkdir(parents=True, exist_ok=True)
    install = " ".join(GPU_PACKAGES + MIRROR_PACKAGES)
    script = f"""
set -eu
mount -t overlay overlay -o lowerdir={rootfs},upperdir={work}/upper,workdir={work}/work {work}/merged
m={work}/merged
mkdir -p $m/bundle $m/etc/apt/keyrings
mount --bind {full["out"]} $m/bundle
mount -t proc proc $m/proc
cp {site["keyring"]} $m/etc/apt/keyrings/bundle.gpg
rm -f $m/etc/apt/sources.list.d/* ; : > $m/etc/apt/sources.list
printf 'Types: deb\\nURIs: file:/bundle/apt/debian12\\nSuites: gpuprov\\nComponents: main\\nSigned-By: /etc/apt/keyrings/bundle.gpg\\n' > $m/etc/apt/sources.list.d/bundle.sources
printf '#!/bin/sh\\nexit 101\\n' > $m/usr/sbin/policy-rc.d; chmod +x $m/usr/sbin/policy-rc.d
chroot $m apt-get update
DEBIAN_FRONTEND=noninteractive chroot $m apt-get install -y --no-install-recommends {install}
chroot $m dpkg-query -W -f '${{Package}} ${{Version}} ${{Status}}\\n' {" ".join(p.split("=")[0] for p in GPU_PACKAGES + MIRROR_PACKAGES)}
"""
    done = subprocess.run(
        ["unshare", "--mount", "--net", "--fork", "bash", "-c", script],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    installed = [line for line in done.stdout.splitlines() if line.endswith("install ok installed")]
    assert len(installed) == len(GPU_PACKAGES + MIRROR_PACKAGES), done.stdout[-3000:]
    assert f"nvidia-driver-580-open {DRIVER}-1 install ok installed" in installed
