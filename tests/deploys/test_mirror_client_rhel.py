"""A RHEL GPU host wired to its mirror (an inventory of real files: a bundle keyring and
the upstream keys made by gpg), planned against fact output (pyinfra's @fake connector):
/etc/yum.repos.d/gpuprov-mirror.repo on the mirror's /rpm/<os-id>/, gpgcheck and
repo_gpgcheck on, gpgkey= local files only (never a URL on the mirror), armored as rpm
reads them; converged, nothing changes; without the keys dnf is left alone; a file that
is no keyring refuses the host. Real dnf reads these files in
tests/gpuprov/bundle/test_rhel_far_side.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pyinfra.api import deploy

sys.path.insert(0, str(Path(__file__).parent))

from gpuprov.deploys.mirror_client import mirror_client  # noqa: E402
from hoststate import host_state_output  # noqa: E402
from plan_harness import extras_output, plan  # noqa: E402
from test_gpu_stack_plan import find  # noqa: E402
from test_mirror_client_wiring import written, written_bytes  # noqa: E402

from gpuprov.aptrepo import generate_key  # noqa: E402
from gpuprov.inventory.loader import load_inventory  # noqa: E402
from gpuprov.inventory.mirrors import MIRROR_CHOICE_KEY, nearest_mirror  # noqa: E402
from gpuprov.operations.files import sha256  # noqa: E402
from gpuprov.operations.rpmrepo import KeyringError, armored_public_keys  # noqa: E402

REPO = "/etc/yum.repos.d/gpuprov-mirror.repo"
KEY = "/etc/pki/rpm-gpg/RPM-GPG-KEY-gpuprov-mirror"
UPSTREAM = "/etc/pki/rpm-gpg/RPM-GPG-KEY-gpuprov-mirror-upstream"
INVENTORY = """\
cluster:
  name: rhel-site
  stack:
    os: rhel9
    driver: {branch: "580", version: "580.95.05"}
    container_runtime: podman
  mirror: {host: mirror01, keyring: bundle.gpg%s}
groups:
  gpu:
    profile: hgx-h100-8
    hosts:
      gpu001: {address: 10.0.1.1}
  mirrors:
    role: mirror
    hosts:
      mirror01: {address: 10.0.1.5}
"""


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("rhel-keys")
    bundle = generate_key(work / "bundle-gnupg", "Site bundles", "b@gpuprov.invalid")
    vendor = generate_key(work / "vendor-gnupg", "Vendor", "v@gpuprov.invalid")
    upstream = work / "upstream.asc"
    done = subprocess.run(["gpg", "--homedir", str(vendor.home), "--armor", "--export"],
                          capture_output=True, check=True, timeout=60)  # fmt: skip
    upstream.write_bytes(done.stdout)
    return {"bundle": bundle.export_public(work / "bundle.gpg"), "upstream": upstream,
            "home": bundle.home}  # fmt: skip


def cluster_with(tmp_path: Path, keys: dict[str, Path], extra: str = ", rpm_keys: upstream.asc"):
    (tmp_path / "bundle.gpg").write_bytes(keys["bundle"].read_bytes())
    (tmp_path / "upstream.asc").write_bytes(keys["upstream"].read_bytes())
    path = tmp_path / "site.yaml"
    path.write_text(INVENTORY % extra)
    return load_inventory(path)


@deploy("Mirror client only")
def mirror_client_only() -> None:
    from gpuprov.deploys.context import node_context

    mirror_client(node_context())


def rhel_plan(cluster, extras: str = ""):
    me = cluster.hosts["gpu001"]
    return plan(me, host_state_output("rhel9"), extras, deploy=mirror_client_only,
                **{MIRROR_CHOICE_KEY: nearest_mirror(cluster, me)})  # fmt: skip


def test_rhel_host_gets_a_dnf_repository_with_local_keys_only(tmp_path, keys) -> None:
    ops = rhel_plan(cluster_with(tmp_path, keys))
    assert written(ops, REPO) == (
        "# Managed by gpuprov: the site mirror's RPM repository (edits are overwritten).\n"
        "[gpuprov-mirror]\nname=gpuprov site mirror\nbaseurl=http://10.0.1.5:8080/rpm/rhel9/\n"
        "enabled=1\ngpgcheck=1\nrepo_gpgcheck=1\n"
        f"gpgkey=file://{KEY} file://{UPSTREAM}\nskip_if_unavailable=0\n"
    )
    # the bundle keyring (binary, as apt takes it) armored: gpg reads back the same key
    armored = written_bytes(ops, KEY)
    assert armored.startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n")
    dearmored = subprocess.run(["gpg", "--dearmor"], input=armored, capture_output=True,
                               check=True, timeout=60).stdout  # fmt: skip
    assert dearmored == keys["bundle"].read_bytes()
    assert written_bytes(ops, UPSTREAM) == keys["upstream"].read_bytes().strip() + b"\n"
    step = find(ops, "dnf repository: the site mirror (mirror01)")
    assert step.commands[-1] == "dnf -y -q makecache --repo=gpuprov-mirror"
    # an RHEL host gets no apt source, and never module_hotfixes
    assert not any("/etc/apt/" in c for o in ops for c in o.commands)
    assert "module_hotfixes" not in written(ops, REPO)


def test_converged_rhel_host_changes_nothing(tmp_path, keys) -> None:
    cluster = cluster_with(tmp_path, keys)
    first = rhel_plan(cluster)
    digests = {p: sha256(written_bytes(first, p)) for p in (REPO, KEY, UPSTREAM)}
    again = rhel_plan(cluster, extras_output(digests=digests))
    step = find(again, "dnf repository")
    assert step.commands == [] and "is up to date" in step.noop


def test_without_upstream_keys_dnf_is_left_alone(tmp_path, keys) -> None:
    ops = rhel_plan(cluster_with(tmp_path, keys, extra=""))
    step = find(ops, "dnf repository: the site mirror")
    assert step.commands == [] and "cluster.mirror.rpm_keys" in step.noop
    assert not any("/etc/yum.repos.d" in c for o in ops for c in o.commands)


def test_a_file_that_is_no_keyring_refuses_the_host(tmp_path, keys) -> None:
    from gpuprov.engine.refusal import HostRefused

    cluster = cluster_with(tmp_path, keys)
    (tmp_path / "upstream.asc").write_text("not a key\n")
    with pytest.raises(HostRefused, match="upstream.asc: not an OpenPGP public keyring"):
        rhel_plan(cluster)


def test_armoring_refuses_what_is_not_a_keyring() -> None:
    with pytest.raises(KeyringError, match="without its END line"):
        armored_public_keys(b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n")
    with pytest.raises(KeyringError, match="larger than"):
        armored_public_keys(b"\x99" + b"\0" * (1024 * 1024))
    with pytest.raises(KeyringError, match="not an OpenPGP public keyring"):
        armored_public_keys(b"")


def test_debian_host_settings_are_unchanged_by_the_rpm_keys(tmp_path, keys) -> None:
    """apt hosts get the same settings with or without rpm_keys (no rpm_url)."""
    cluster = cluster_with(tmp_path, keys)
    choice = nearest_mirror(cluster, cluster.hosts["gpu001"])
    deb = choice.settings("debian12")
    assert deb["apt_url"] == "http://10.0.1.5:8080/debian12" and "rpm_url" not in deb
    assert "rpm_keys" not in deb
    rhel = choice.settings("rhel9")
    assert rhel["rpm_url"] == "http://10.0.1.5:8080/rpm/rhel9/" and "apt_url" not in rhel
