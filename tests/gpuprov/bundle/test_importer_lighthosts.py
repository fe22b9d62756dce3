"""bundle import and rollback onto a real mirror host: a light host (sshd in its own
network namespace over a Debian root filesystem; gpuprov.testbed.lighthosts). Root only.

The bundles are made here with layout.py, exported with export_bundle onto disk media
(FAT32 chunking is proven in test_export.py; here a tiny --chunk-size splits files the
same way), verified and streamed to the host by the real OpenSSH client.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mirror_lab import mirror_site, mirror_site_inventory
from signed_bundles import exported

from gpuprov.bundle import layout
from gpuprov.bundle.importer import BundleRefused, current_manifest, import_bundle, rollback
from gpuprov.bundle.remote import Remote, RemoteError

from .conftest import flip_byte, sample_files

pytestmark = pytest.mark.host
CHUNK = 64 * 1024


@pytest.fixture(scope="module")
def lab() -> Iterator[object]:
    with mirror_site("bndl") as lab:
        yield lab


@pytest.fixture(scope="module")
def inventory(lab, tmp_path_factory) -> Path:
    return mirror_site_inventory(lab, tmp_path_factory.mktemp("inv") / "site.yaml")


@pytest.fixture
def remote(inventory) -> Remote:
    from gpuprov.inventory.loader import load_inventory

    return Remote.mirror_of(load_inventory(inventory))


def _media(make_bundle, tmp_path: Path, files, name: str, base=None) -> Path:
    root = make_bundle(files, name=name, base=base)
    return exported(root, tmp_path / f"{name}-media", chunk_size=CHUNK)


def _tree(lab, root: str) -> dict[str, str]:
    """path -> sha256 of every file under the current bundle, read on the host itself."""
    out = lab.exec(
        "mirror01", f"cd {root}/current/ && find . -type f -exec sha256sum {{}} +"
    ).stdout
    return {line[66:]: line[:64] for line in out.splitlines()}


def test_import_switch_rollback(lab, remote, make_bundle, tmp_path, site_key):
    root = "/srv/gpuprov-t1"
    first = _media(make_bundle, tmp_path, sample_files(), "first")
    result = import_bundle(first, remote, site_key.keyring, root=root)
    m1 = layout.load_manifest(first)
    assert result.bundle == m1.id and result.previous is None
    assert lab.exec("mirror01", f"readlink {root}/current").stdout.strip() == f"bundles/{m1.id}"
    tree = _tree(lab, root)
    expected = {f"./{f.path}": f.sha256 for f in m1.files}
    assert {
        k: v for k, v in tree.items() if k not in ("./manifest.json", "./manifest.json.asc")
    } == expected
    assert current_manifest(remote, root) == m1
    # the chunks were reassembled: no .part files on the host
    assert not [k for k in tree if ".part" in k]

    second = _media(make_bundle, tmp_path, sample_files(seed=5), "second")
    m2 = layout.load_manifest(second)
    assert import_bundle(second, remote, site_key.keyring, root=root).previous == m1.id
    assert lab.exec("mirror01", f"readlink {root}/previous").stdout.strip() == f"bundles/{m1.id}"
    assert rollback(remote, root=root) == (m1.id, m2.id)
    assert current_manifest(remote, root).id == m1.id
    assert rollback(remote, root=root) == (m2.id, m1.id)  # and back again
    # both bundles stay side by side; no temp directories or links are left
    listing = lab.exec("mirror01", f"ls -A {root} {root}/bundles").stdout.split()
    assert not [n for n in listing if "partial" in n or n.endswith(".tmp") or ".old." in n]


def test_damaged_and_untrusted_bundles_are_refused(lab, remote, make_bundle, tmp_path,
                                                   site_key, other_key):  # fmt: skip
    root = "/srv/gpuprov-t2"
    damaged = _media(make_bundle, tmp_path, sample_files(), "damaged")
    flip_byte(damaged / "wheels/gpuprov-0.1-py3-none-any.whl")
    with pytest.raises(BundleRefused) as exc:
        import_bundle(damaged, remote, site_key.keyring, root=root)
    assert [f.name for f in exc.value.findings] == ["wheels/gpuprov-0.1-py3-none-any.whl"]
    foreign_root = make_bundle(sample_files(), name="foreign", keys=other_key)
    foreign = exported(foreign_root, tmp_path / "foreign-media")
    with pytest.raises(BundleRefused) as exc:
        import_bundle(foreign, remote, site_key.keyring, root=root)
    assert "not in the keyring" in str(exc.value.findings[0])
    assert lab.exec("mirror01", f"ls -A {root} 2>/dev/null || true").stdout.strip() == ""


def test_differential_equals_full_and_refuses_other_bases(lab, remote, make_bundle, tmp_path,
                                                          site_key):  # fmt: skip
    base_files = sample_files()
    new_files = dict(base_files)
    new_files["wheels/gpuprov-0.1-py3-none-any.whl"] = os.urandom(150_000)
    new_files["models/org/m/config.json"] = b'{"model_type": "bert"}'
    del new_files["models/empty.txt"]

    full = _media(make_bundle, tmp_path, new_files, "full")
    import_bundle(full, remote, site_key.keyring, root="/srv/gpuprov-full")

    base = _media(make_bundle, tmp_path, base_files, "base")
    base_manifest = layout.load_manifest(base)
    diff = _media(make_bundle, tmp_path, new_files, "diff", base=base_manifest)
    # refused on a mirror that serves nothing, and on one that serves another bundle
    with pytest.raises(BundleRefused, match="serves nothing"):
        import_bundle(diff, remote, site_key.keyring, root="/srv/gpuprov-diff")
    with pytest.raises(BundleRefused, match=f"is differential on base {base_manifest.id[:12]}"):
        import_bundle(diff, remote, site_key.keyring, root="/srv/gpuprov-full")
    import_bundle(base, remote, site_key.keyring, root="/srv/gpuprov-diff")
    result = import_bundle(diff, remote, site_key.keyring, root="/srv/gpuprov-diff")
    assert result.reused_from_base == len(base_manifest.files) - 2  # all but the wheel, empty.txt
    # the same tree, file for file; the manifests differ only in base and creation time
    control = {"./manifest.json", "./manifest.json.asc"}
    full_tree, diff_tree = _tree(lab, "/srv/gpuprov-full"), _tree(lab, "/srv/gpuprov-diff")
    assert {k: v for k, v in diff_tree.items() if k not in control} == {
        k: v for k, v in full_tree.items() if k not in control
    }
    assert len(full_tree) == len(layout.load_manifest(full).files) + 2
    assert current_manifest(remote, "/srv/gpuprov-diff").id == layout.load_manifest(full).id
    diff_sent = result.bytes_sent
    assert diff_sent < 200_000 + 20 * 1024  # only the new wheel and config travelled


def test_cli_import_json_and_exit_codes(lab, inventory, make_bundle, tmp_path, site_key):
    media = _media(make_bundle, tmp_path, sample_files(seed=9), "cli")

    def gpuprov(*args):
        return subprocess.run(
            [sys.executable, "-c", "from gpuprov.cli import main; main()", *map(str, args)],
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip

    ok = gpuprov("bundle", "import", media, inventory, "--keyring", site_key.keyring,
                 "--root", "/srv/gpuprov-cli", "--output", "json")  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["bundle"] == layout.load_manifest(media).id
    no_previous = gpuprov("bundle", "rollback", inventory, "--root", "/srv/gpuprov-cli")
    assert no_previous.returncode == 1
    assert "no previous bundle to roll back to" in no_previous.stderr
    (media / "oci" / "stray").write_bytes(b"x")
    refused = gpuprov("bundle", "import", media, inventory, "--keyring", site_key.keyring,
                      "--root", "/srv/gpuprov-cli")  # fmt: skip
    assert refused.returncode == 1
    assert "oci/stray: unlisted file" in refused.stderr and "Traceback" not in refused.stderr


def test_far_side_recheck_refuses_a_bad_copy(lab, remote, make_bundle, tmp_path, site_key):
    """The mirror host checks every file itself before switching: here a base file on
    the mirror was altered, so the differential's hard link to it fails sha256sum -c,
    the partial directory is removed and `current` still points at the base."""
    root = "/srv/gpuprov-t5"
    base = _media(make_bundle, tmp_path, sample_files(), "base")
    base_manifest = layout.load_manifest(base)
    import_bundle(base, remote, site_key.keyring, root=root)
    files = sample_files()
    files["models/new.txt"] = b"new"
    diff = _media(make_bundle, tmp_path, files, "diff", base=base_manifest)
    lab.exec("mirror01", f"echo altered >> {root}/current/oci/oci-layout")
    with pytest.raises(RemoteError, match="does not match the signed manifest"):
        import_bundle(diff, remote, site_key.keyring, root=root)
    current = lab.exec("mirror01", f"readlink {root}/current").stdout.strip()
    assert current == f"bundles/{base_manifest.id}"
    assert lab.exec("mirror01", f"ls -A {root}/bundles").stdout.split() == [base_manifest.id]


def test_a_model_stores_own_manifest_json_files_are_counted(
    lab, remote, make_bundle, tmp_path, site_key
):
    """A model store keeps commits/<sha>/manifest.json: a file named like the bundle's
    manifest, deeper in the tree. The import's file count used to skip it (find -name)
    and refused every bundle carrying a model."""
    root = "/srv/gpuprov-models"
    files = sample_files(seed=9)
    files["models/repos/models/acme/tiny/commits/" + "a" * 40 + "/manifest.json"] = b"{}\n"
    media = _media(make_bundle, tmp_path, files, "with-model")
    result = import_bundle(media, remote, site_key.keyring, root=root)
    assert result.bundle == layout.load_manifest(media).id
