"""Parsing dnf's output, on output captured from real dnf runs in an isolated installroot
(tests/fixtures/dnf/): the transaction's packages and the reasons a build fails."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from gpuprov.bundle.dnfroot import (
    DnfError,
    RpmRef,
    _read_bounded,
    dnf_reasons,
    module_profiles,
    transaction_rows,
)
from gpuprov.bundle.packages import OsPackages

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "dnf"


def test_transaction_table_names_every_package_installed():
    refs = transaction_rows((FIXTURES / "install-assumeno-hgx.txt").read_text())
    by_name = {r.name: r for r in refs}
    assert len(refs) == 24  # Install 24 Packages (the summary line)
    assert "Install  24 Packages" in (FIXTURES / "install-assumeno-hgx.txt").read_text()
    # Every section that installs: explicit, module profile, dependencies.
    assert by_name["cuda-toolkit-12-8"] == RpmRef("cuda-toolkit-12-8", "0", "12.8.1", "1", "x86_64")
    assert by_name["nvidia-driver"].filename == "nvidia-driver-580.95.05-1.el9.x86_64.rpm"
    assert by_name["nvidia-driver"].nevra == "nvidia-driver-3:580.95.05-1.el9.x86_64"
    assert by_name["containers-common"].arch == "noarch"
    # The skipped newer release (best=False) and the module profile line are not packages.
    assert not [r for r in refs if r.version == "580.105.08"]
    assert "nvidia-driver/fm" not in by_name


def test_a_name_too_long_for_its_column_is_joined_with_its_row():
    text = (
        "Installing dependencies:\n"
        " datacenter-gpu-manager-4-cuda12-with-a-very-long-name\n"
        "                      x86_64  1:4.4.1-1   cuda-rhel9-x86_64   6.5 k\n"
        " bash                 x86_64  5.1.8-9.el9 rhel-9-for-x86_64-baseos-rpms 1.7 M\n"
        "\nTransaction Summary\n"
    )
    assert [r.name for r in transaction_rows(text)] == [
        "datacenter-gpu-manager-4-cuda12-with-a-very-long-name",
        "bash",
    ]


def test_reasons_name_the_package_and_the_failure():
    no_match = dnf_reasons((FIXTURES / "install-no-match.txt").read_text())
    assert "No match for argument: kmod-nvidia-open-dkms-580.65.06-1.el9" in no_match
    bad_pkg = dnf_reasons((FIXTURES / "downloadonly-package-bad-signature.txt").read_text())
    assert any("Failing package is: beta-3:580.95.05-1.el9.x86_64" in r for r in bad_pkg)
    assert "Error: GPG check FAILED" in bad_pkg
    bad_repo = dnf_reasons((FIXTURES / "makecache-repomd-bad-signature.txt").read_text())
    assert bad_repo == [
        "Error: Failed to download metadata for repo 'source1': repomd.xml GPG signature "
        "verification error: Bad GPG signature"
    ]


def test_fabric_manager_selects_the_fm_profile():
    pkgs = OsPackages("rhel9", "dnf")
    pkgs.add("gpu001", "nvidia-driver:580-open", None)
    pkgs.add("gpu001", "nvidia-fabric-manager", "580.95.05-1")
    pkgs.add("gpu002", "nvidia-driver:570-open", None)
    [t570, t580] = sorted(pkgs.transactions())
    assert module_profiles(pkgs, t580) == {"nvidia-driver:580-open": "fm"}
    assert module_profiles(pkgs, t570) == {"nvidia-driver:570-open": "default"}


@pytest.mark.parametrize("suffix", ["", ".gz", ".xz", ".bz2", ".zst"])
def test_module_metadata_is_read_in_every_compression_dnf_caches(tmp_path, suffix):
    """Repositories publish modules.yaml compressed as they like (NVIDIA's: gz; newer
    createrepo_c: zst); each is read with its size bounded."""
    if suffix == ".zst" and shutil.which("zstd") is None:
        pytest.skip("zstd not installed")
    text = "document: modulemd\\nversion: 2\\n"
    plain = tmp_path / "modules.yaml"
    plain.write_text(text)
    tool = {
        ".gz": ["gzip", "-k"],
        ".xz": ["xz", "-k"],
        ".bz2": ["bzip2", "-k"],
        ".zst": ["zstd", "-q"],
    }
    if suffix:
        subprocess.run([*tool[suffix], str(plain)], check=True, timeout=60)
    assert _read_bounded(tmp_path / f"modules.yaml{suffix}") == text


def test_oversized_module_metadata_is_refused(tmp_path, monkeypatch):
    import gpuprov.bundle.dnfroot as dnfroot

    monkeypatch.setattr(dnfroot, "MAX_MODULES_BYTES", 10)
    (tmp_path / "modules.yaml").write_text("x" * 11)
    with pytest.raises(DnfError, match="larger than 10 bytes"):
        _read_bounded(tmp_path / "modules.yaml")
