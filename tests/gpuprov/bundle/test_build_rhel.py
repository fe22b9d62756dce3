"""`gpuprov bundle build` for a RHEL 9 GPU host, end to end with real tools: dnf resolving
in an installroot against two signed RPM repositories served on loopback (stand-ins for
RHEL 9 BaseOS/AppStream and NVIDIA's CUDA rhel9 repository, with the driver as the DNF
module `nvidia-driver`, built by gpuprov/testbed/standin_rpms.py), then the bundle's own
repository consumed by `dnf --installroot` with gpgcheck and repo_gpgcheck on.

No network beyond loopback for the packages; the wheels step uses pip's index like
test_build.py. The stand-in RPMs are cached under $GPUPROV_CACHE/standin-rpms.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from gpuprov.aptrepo import generate_key
from gpuprov.bundle import layout
from gpuprov.bundle.dnfroot import DnfError
from gpuprov.testbed.rootfs import cache_dir
from gpuprov.testbed.standin_rpms import check_tools, label, publish_standin_repos

from .builds import assert_refused_cleanly, build

missing = check_tools() + [t for t in ("dnf", "gpgv") if shutil.which(t) is None]
if missing:
    pytest.skip(f"not installed: {', '.join(missing)} (make system-deps)", allow_module_level=True)

DRIVER = "580.95.05"
NEWER = "580.105.08"  # also in the stream upstream: the pin must keep it out
# What the GPU host's deploys install (HGX H100: NVSwitch -> fabric manager, module profile fm).
DRIVER_SET = [
    f"nvidia-driver-{DRIVER}-1.el9.x86_64.rpm",
    f"nvidia-driver-cuda-{DRIVER}-1.el9.x86_64.rpm",
    f"kmod-nvidia-open-dkms-{DRIVER}-1.el9.x86_64.rpm",
    f"nvidia-kmod-common-{DRIVER}-1.el9.noarch.rpm",
    f"nvidia-persistenced-{DRIVER}-1.el9.x86_64.rpm",
    f"nvidia-fabric-manager-{DRIVER}-1.x86_64.rpm",
]
STACK = [
    "cuda-toolkit-12-8-12.8.1-1.x86_64.rpm",
    "nvidia-container-toolkit-1.17.8-1.x86_64.rpm",
    "datacenter-gpu-manager-4-cuda12-4.4.1-1.x86_64.rpm",
    "podman-5.4.0-9.el9_6.x86_64.rpm",
    "kernel-devel-5.14.0-570.58.1.el9_6.x86_64.rpm",
    "nginx-1.20.1-22.el9_6.3.x86_64.rpm",  # the mirror host runs RHEL 9 too
]
DEPS = ["dkms-3.2.1-1.el9.noarch.rpm", "gcc-11.5.0-5.el9_5.x86_64.rpm", "conmon-2.1.12-1.el9.x86_64.rpm"]  # fmt: skip


GETS: list[str] = []  # every path the upstream server was asked for


class _Logged(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        pass

    def do_GET(self):  # noqa: N802 - stdlib name
        GETS.append(self.path)
        super().do_GET()


def rpm_gets() -> int:
    return sum(1 for p in GETS if p.endswith(".rpm"))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The two upstream repositories on loopback, signed by a stand-in vendor key; the
    site's bundle key; a cache of this module's own (the dnf root)."""
    work = tmp_path_factory.mktemp("rhel-site")
    vendor = generate_key(work / "vendor-gnupg", "stand-in RHEL and NVIDIA", "v@gpuprov.invalid")
    repos = publish_standin_repos(cache_dir() / "standin-rpms", work / "upstream", vendor.home,
                                  vendor.fingerprint)  # fmt: skip
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Logged, directory=str(work / "upstream"))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    bundle_key = generate_key(work / "bundle-gnupg", "Site bundles", "bundle@gpuprov.invalid")
    try:
        yield {
            "work": work,
            "url": f"http://127.0.0.1:{server.server_address[1]}",
            "repos": repos,
            "vendor_keyring": vendor.export_public(work / "vendor.gpg"),
            "key": bundle_key,
            "keyring": bundle_key.export_public(work / "bundle.gpg"),
            "cache": work / "cache",
        }
    finally:
        server.shutdown()
        server.server_close()


def write_inventory(site: dict, path: Path, *, driver: str = DRIVER, keyring: Path | None = None) -> Path:  # fmt: skip
    keyring = keyring or site["vendor_keyring"]
    path.write_text(f"""\
cluster:
  name: rhel-bundle-test
  stack:
    os: rhel9
    driver: {{branch: "580", version: "{driver}"}}
    cuda: ["12.8"]
    cuda_default: "12.8"
    container_runtime: podman
    dcgm: true
  mirror: {{host: mirror01}}
  bundle:
    targets:
      rhel9:
        sources:
          - {{url: "{site["url"]}/rhel9", keyring: {keyring}}}
          - {{url: "{site["url"]}/cuda", keyring: {keyring}}}
    python: ["3.11"]
groups:
  hgx:
    profile: hgx-h100-8
    hosts:
      gpu001: {{address: 10.0.0.11}}
  mirror:
    role: mirror
    hosts:
      mirror01: {{address: 10.0.0.5}}
""")
    return path


@pytest.fixture(scope="module")
def full(site):
    inv = write_inventory(site, site["work"] / "site.yaml")
    out = site["work"] / "bundle-1"
    return {"inventory": inv, "out": out, "result": build(site, inv, out)}


def test_bundle_carries_a_signed_rpm_repository_of_the_closure(full, site):
    out = full["out"]
    assert layout.verify_signature(out, site["keyring"]) == site["key"].fingerprint
    manifest = layout.load_manifest(out)
    assert {f.path: f for f in layout.scan_tree(out)} == manifest.by_path()
    rpm_files = [f for f in manifest.files if f.path.startswith("rpm/rhel9/")]
    assert rpm_files and {f.kind for f in rpm_files} == {"rpm"}
    assert not (out / "apt").exists()  # RHEL packages are never dressed up as apt

    repo = out / "rpm/rhel9"
    carried = sorted(p.name for p in (repo / "Packages").iterdir())
    assert carried == sorted(full["result"].packages["rhel9"])
    # dnf resolved the closure: the pinned driver set (module profile fm), the stack,
    # and what they need (dkms and its compiler, podman's conmon, the base libraries).
    for name in DRIVER_SET + STACK + DEPS:
        assert name in carried, f"{name} missing from the bundle's repository"
    assert not [n for n in carried if NEWER in n]  # the pin held against the newer release
    # Upstream signatures are kept, and the upstream keys travel for gpgcheck on the hosts.
    info = subprocess.run(["rpm", "-qpi", repo / "Packages" / DRIVER_SET[0]],
                          capture_output=True, text=True, check=True)  # fmt: skip
    assert re.search(r"^Signature *: .*Key ID [0-9a-f]{16}$", info.stdout, re.M), info.stdout
    assert b"BEGIN PGP PUBLIC KEY BLOCK" in (repo / "keys/upstream.asc").read_bytes()
    # The metadata is signed with the bundle key (what repo_gpgcheck checks on the hosts).
    gpgv = subprocess.run(["gpgv", "--keyring", site["keyring"], repo / "repodata/repomd.xml.asc",
                           repo / "repodata/repomd.xml"], capture_output=True, text=True)  # fmt: skip
    assert gpgv.returncode == 0, gpgv.stderr
    # The driver's module stream travels, or the hosts could not enable it.
    modules = (repo / "repodata/modules.yaml.gz").read_bytes()
    import gzip

    text = gzip.decompress(modules).decode()
    assert "stream: 580-open" in text and f"nvidia-driver-3:{DRIVER}-1.el9.x86_64" in text
    assert label() in (repo / "Packages" / DRIVER_SET[0]).read_bytes().decode("latin-1")


def dnf_root(root: Path, repo: Path, keys: list[Path]) -> list[str]:
    """dnf against `repo` alone, into an empty installroot, checking every signature."""
    (root / "repos.d").mkdir(parents=True)
    (root / "dnf.conf").write_text("[main]\nplugins=0\n")
    (root / "repos.d/bundle.repo").write_text(
        f"[bundle]\nname=gpuprov bundle\nbaseurl=file://{repo}\nenabled=1\ngpgcheck=1\n"
        f"repo_gpgcheck=1\ngpgkey={' '.join(f'file://{k}' for k in keys)}\n"
    )
    return ["dnf", "-y", "-c", str(root / "dnf.conf"), f"--installroot={root / 'installroot'}",
            "--releasever=9", "--forcearch=x86_64", "--noplugins",
            f"--setopt=reposdir={root / 'repos.d'}", f"--setopt=cachedir={root / 'cache'}",
            "--setopt=install_weak_deps=False"]  # fmt: skip


def armored(keyring: Path, dest: Path) -> Path:
    from gpuprov.bundle.dnfroot import armored_keys

    armored_keys(keyring, dest)
    return dest


@pytest.mark.skipif(os.geteuid() != 0, reason="installing RPMs into an installroot needs root")
def test_hosts_install_the_driver_set_from_the_bundle_alone(full, site, tmp_path):
    """The far side: the bundle's repository as the only source, gpgcheck and
    repo_gpgcheck on, trust from the site's bundle keyring (converted to the armored
    form dnf reads) and the upstream keys the bundle carries; the deploys' own steps:
    module enable, module install with profile fm, the pinned packages, the stack."""
    repo = full["out"] / "rpm/rhel9"
    keys = [armored(site["keyring"], tmp_path / "bundle.asc"), repo / "keys/upstream.asc"]
    dnf = dnf_root(tmp_path / "far", repo, keys)
    steps = [
        ["module", "enable", "nvidia-driver:580-open"],
        ["module", "install", "nvidia-driver:580-open/fm"],
        ["install", f"nvidia-fabric-manager-{DRIVER}-1", f"kmod-nvidia-open-dkms-{DRIVER}-1.el9",
         f"nvidia-persistenced-{DRIVER}-1.el9", "cuda-toolkit-12-8", "nvidia-container-toolkit",
         "datacenter-gpu-manager-4-cuda12", "podman", "kernel-devel"],
    ]  # fmt: skip
    for args in steps:
        done = subprocess.run([*dnf, *args], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (args, done.stdout[-3000:], done.stderr[-3000:])
    query = subprocess.run(
        ["rpm", f"--root={tmp_path / 'far/installroot'}", "-qa", "--qf", "%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}.rpm\n"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    installed = set(query.stdout.split())
    assert set(DRIVER_SET + STACK[:-1]) <= installed, sorted(installed)


def test_tampered_bundle_metadata_is_refused_by_dnf(full, site, tmp_path):
    """repo_gpgcheck is what protects the hosts: a repomd.xml changed after signing
    (here: a copy of the bundle's repository) is refused before any package is read."""
    copy = tmp_path / "repo"
    shutil.copytree(full["out"] / "rpm/rhel9", copy)
    repomd = copy / "repodata/repomd.xml"
    repomd.write_text(repomd.read_text().replace("<revision>", "<revision>1"))
    keys = [armored(site["keyring"], tmp_path / "bundle.asc"), copy / "keys/upstream.asc"]
    done = subprocess.run([*dnf_root(tmp_path / "far", copy, keys), "makecache"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode != 0
    assert "repomd.xml GPG signature verification error" in done.stdout + done.stderr


def test_rerun_fetches_no_rpm_again(full, site):
    """Same inventory and cache: dnf asks the upstreams for no package (their metadata
    only), and the cached RPMs are used as they are."""
    before = {p.name: p.stat().st_mtime_ns for p in site["cache"].rglob("packages/*.rpm")}
    gets = rpm_gets()
    assert gets >= len(DRIVER_SET + STACK + DEPS)  # the first build did fetch them
    out = site["work"] / "bundle-again"
    result = build(site, full["inventory"], out)
    assert [f for f in result.fetches if f.kind == "rpm"] == []
    assert rpm_gets() == gets
    assert {p.name: p.stat().st_mtime_ns for p in site["cache"].rglob("packages/*.rpm")} == before
    first = layout.load_manifest(full["out"]).by_path()
    again = layout.load_manifest(out).by_path()
    pkgs = [p for p in first if p.startswith("rpm/rhel9/Packages/")]
    assert pkgs and all(again[p].sha256 == first[p].sha256 for p in pkgs)


def gpuprov(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpuprov.cli", *map(str, args)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "250"},
    )  # fmt: skip


def test_dry_run_lists_every_rpm_with_its_size_and_downloads_none(site, tmp_path):
    inv = write_inventory(site, tmp_path / "site.yaml")
    cache = tmp_path / "cache"
    gets = rpm_gets()
    done = gpuprov("bundle", "build", inv, "--dry-run", "--cache", cache)
    assert done.returncode == 0, done.stdout + done.stderr
    rpm = [line for line in done.stdout.splitlines() if line.startswith("would fetch rpm ")]
    names = {line.split()[3].split("/", 1)[1] for line in rpm}
    assert set(DRIVER_SET + STACK + DEPS) <= names, sorted(names)
    assert all(re.search(r"\([0-9.]+ (B|KiB|MiB)\)$", line) for line in rpm), rpm[:3]
    assert list(cache.rglob("*.rpm")) == [] and rpm_gets() == gets
    assert re.fullmatch(
        r"would fetch [0-9]+ files, [0-9.]+ (KiB|MiB)", done.stdout.splitlines()[-1]
    )
    assert not list(tmp_path.glob(".*building*"))


def test_unresolvable_driver_version_fails_the_build_naming_it(site, tmp_path):
    inv = write_inventory(site, tmp_path / "site.yaml", driver="580.65.06")
    out = tmp_path / "bundle"
    done = gpuprov("bundle", "build", inv, "--to", out, "--key-home", site["key"].home,
                   "--cache", site["cache"])  # fmt: skip
    assert_refused_cleanly(
        done, out, tmp_path,
        "rhel9: dnf cannot resolve or fetch the bundle's packages",
        "No match for argument: kmod-nvidia-open-dkms-580.65.06-1.el9",
    )  # fmt: skip


def test_upstream_signed_by_another_key_is_refused(site, tmp_path):
    """The upstreams checked against the bundle key instead of the vendor's: dnf refuses
    their signed metadata and the build names the repository."""
    inv = write_inventory(site, tmp_path / "site.yaml", keyring=site["keyring"])
    with pytest.raises(DnfError) as info:
        build(site, inv, tmp_path / "bundle", cache=tmp_path / "cache")
    message = str(info.value)
    assert "repomd.xml GPG signature verification error" in message, message
    assert not (tmp_path / "bundle").exists()


def test_package_signed_by_another_key_fails_the_build_naming_it(site, tmp_path):
    """Signed metadata is not enough: an RPM in it signed by a key the inventory does not
    trust (re-signed after the fact, metadata re-signed by the vendor) fails dnf's
    gpgcheck, and the build names the package; nothing is published."""
    from gpuprov.testbed.standin_rpms import sign_rpms

    bad = site["work"] / "upstream" / "cuda-tampered"
    if not bad.exists():
        shutil.copytree(site["repos"]["cuda"], bad)
        other = generate_key(tmp_path / "other-gnupg", "Someone else", "x@gpuprov.invalid")
        victim = bad / "Packages" / f"nvidia-persistenced-{DRIVER}-1.el9.x86_64.rpm"
        sign_rpms([victim], other.home, other.fingerprint)
        subprocess.run(["createrepo_c", "--quiet", "--update", str(bad)], check=True, timeout=120)
        modules = next((site["repos"]["cuda"] / "repodata").glob("*modules.yaml.gz"))
        subprocess.run(["modifyrepo_c", "--mdtype=modules", str(modules), str(bad / "repodata")],
                       check=True, capture_output=True, timeout=120)  # fmt: skip
        vendor_home = site["work"] / "vendor-gnupg"
        subprocess.run(["gpg", "--homedir", str(vendor_home), "--batch", "--yes", "--armor",
                        "--detach-sign", str(bad / "repodata/repomd.xml")],
                       check=True, capture_output=True, timeout=60)  # fmt: skip
    inv = write_inventory(site, tmp_path / "site.yaml")
    inv.write_text(inv.read_text().replace('/cuda"', '/cuda-tampered"'))
    with pytest.raises(DnfError) as info:
        build(site, inv, tmp_path / "bundle", cache=tmp_path / "cache")
    message = str(info.value)
    assert f"nvidia-persistenced-3:{DRIVER}-1.el9.x86_64" in message, message
    assert "GPG check FAILED" in message
    assert not (tmp_path / "bundle").exists()


def test_far_side_verify_accepts_the_rpm_repository(full, site):
    """`gpuprov bundle verify` knows the rpm kind: the RHEL bundle verifies clean."""
    done = gpuprov("bundle", "verify", full["out"], "--keyring", site["keyring"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "is intact" in done.stdout + done.stderr
