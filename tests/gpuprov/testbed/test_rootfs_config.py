"""Fast tier: the test bed's mirror discovery and inventory writer (no root, no hosts)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ruamel.yaml import YAML

from gpuprov.testbed import rootfs
from gpuprov.testbed.inventory import write_lab_inventory
from gpuprov.testbed.rootfs import debian_mirror


def test_mirror_from_deb822_skips_disabled_and_other_suites(tmp_path: Path) -> None:
    (tmp_path / "a.sources").write_text(
        "Types: deb\nURIs: http://disabled.example/debian\nSuites: bookworm\nEnabled: no\n\n"
        "Types: deb\n# comment\nURIs: http://sec.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb deb-src\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n"
    )
    assert debian_mirror(tmp_path, tmp_path / "none.list") == "http://mirror.example/debian"


def test_mirror_from_one_line_sources_list(tmp_path: Path) -> None:
    legacy = tmp_path / "sources.list"
    legacy.write_text(
        "# deb http://old.example/debian bookworm main\n"
        "deb [signed-by=/k.gpg] http://legacy.example/debian bookworm main\n"
    )
    assert debian_mirror(tmp_path, legacy) == "http://legacy.example/debian"


def test_no_mirror_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="no apt source for Debian bookworm"):
        debian_mirror(tmp_path, tmp_path / "none.list")


def test_a_suite_apt_does_not_list_comes_from_the_bookworm_archive(tmp_path: Path) -> None:
    (tmp_path / "a.sources").write_text(
        "Types: deb\nURIs: http://sec.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n"
    )
    none = tmp_path / "none.list"
    assert debian_mirror(tmp_path, none, suite="trixie") == "http://mirror.example/debian"
    (tmp_path / "b.sources").write_text(
        "Types: deb\nURIs: http://trixie.example/debian\nSuites: trixie\n"
    )
    assert debian_mirror(tmp_path, none, suite="trixie") == "http://trixie.example/debian"


def test_each_suite_has_its_own_cache_key() -> None:
    # The bookworm key is what every engineer's cache holds: it must not move with trixie.
    assert rootfs._key() == rootfs._key("bookworm") != rootfs._key("trixie")
    with pytest.raises(ValueError, match="test bed suite 'sid': expected one of bookworm, trixie"):
        rootfs._key("sid")
    with pytest.raises(ValueError, match="expected one of"):
        rootfs.ensure_rootfs(suite="../../etc")


def test_this_machine_has_a_mirror() -> None:
    assert debian_mirror().startswith(("http://", "https://"))


def test_lab_inventory(tmp_path: Path) -> None:
    hosts = [(f"node{i:02d}", f"10.213.9.{9 + i}") for i in range(1, 7)]
    path = write_lab_inventory(
        tmp_path / "inv.yaml", hosts=hosts, key=tmp_path / "k", known_hosts=tmp_path / "kh",
        mirror=True, cuda=["12.8", "13.0"],
    )  # fmt: skip
    data = YAML(typ="safe").load(path.read_text())
    assert data["cluster"]["mirror"] == {"host": "node01"}
    assert data["groups"]["mirror"]["hosts"] == {"node01": {"address": "10.213.9.10"}}
    gpu = data["groups"]["gpu"]
    assert gpu["profile"] == "hgx-h100-8"
    assert list(gpu["hosts"]) == ["node02", "node03", "node04", "node05", "node06"]
    assert [h["rack"] for h in gpu["hosts"].values()] == ["r01", "r01", "r01", "r01", "r02"]
    assert data["cluster"]["stack"]["cuda"] == ["12.8", "13.0"]
    assert data["cluster"]["stack"]["driver"] == {
        "branch": "580",
        "version": "580.95.05",
        "modules": "auto",
    }
    assert not (tmp_path / "inv.yaml.tmp").exists()
