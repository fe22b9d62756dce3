"""Host ranges in gpuprov's own format (`gpu[001:128]:`), expanded by the loader."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gpuprov.errors import InputError
from gpuprov.inventory.loader import load_inventory

HEAD = """\
cluster:
  name: big
  stack:
    driver: {branch: "580", version: "580.95.05"}
  mirror: {host: mirror01}
groups:
  mirror:
    hosts:
      mirror01: {address: 10.9.0.5}
  hgx:
    profile: hgx-h100-8
    hosts:
"""


def write(tmp_path: Path, hosts: str) -> Path:
    f = tmp_path / "site.yaml"
    f.write_text(HEAD + hosts)
    return f


def errors(f: Path) -> list[str]:
    with pytest.raises(InputError) as info:
        load_inventory(f)
    return [str(p) for p in info.value.problems]


def test_start_address_and_racks_of_16(tmp_path: Path) -> None:
    f = write(tmp_path, '      gpu[001:128]:\n        address: 10.20.1.250\n'
                        '        hosts_per_rack: 16\n        rack: "b{rack:02d}"\n')  # fmt: skip
    c = load_inventory(f)
    gpus = c.gpu_hosts()
    assert len(gpus) == 128 and gpus[0].name == "gpu001" and gpus[-1].name == "gpu128"
    assert [h.address for h in gpus[:8]] == [
        "10.20.1.250", "10.20.1.251", "10.20.1.252", "10.20.1.253", "10.20.1.254",
        "10.20.1.255", "10.20.2.0", "10.20.2.1"]  # fmt: skip
    assert gpus[127].address == "10.20.2.121"
    assert [c.hosts[n].rack for n in ("gpu001", "gpu016", "gpu017", "gpu128")] == [
        "b01", "b01", "b02", "b08"]  # fmt: skip
    assert all(str(h.location) == f"{f}:13:7" for h in gpus)  # errors/reports name the line
    assert [h.name for h in c.select(["gpu017"])] == ["gpu017"]  # --limit by name


def test_address_pattern_default_rack_names_and_first_rack(tmp_path: Path) -> None:
    f = write(tmp_path, '      gpu[041:048]:\n        address: "10.21.{rack}.{n}"\n'
                        "        hosts_per_rack: 4\n        first_rack: 3\n"
                        "        vars: {slurm_partition: big}\n"
                        '      n[a:b]: {address: "n-{i}.example"}\n')  # fmt: skip
    c = load_inventory(f)
    assert (c.hosts["gpu041"].address, c.hosts["gpu041"].rack) == ("10.21.3.41", "r03")
    assert (c.hosts["gpu048"].address, c.hosts["gpu048"].rack) == ("10.21.4.48", "r04")
    assert c.hosts["gpu048"].vars == {"slurm_partition": "big"}
    assert (c.hosts["na"].address, c.hosts["nb"].address) == ("n-0.example", "n-1.example")


def test_overlapping_ranges_name_both_lines(tmp_path: Path) -> None:
    f = write(tmp_path, "      gpu[001:016]:\n        address: 10.20.1.1\n"
                        "      gpu[010:020]:\n        address: 10.20.9.1\n")  # fmt: skip
    found = errors(f)
    assert found[0] == (f"{f}:15:7: error: overlapping ranges: 'gpu[010:020]' and "
                        f"'gpu[001:016]' (at {f}:13:7) both name host 'gpu010'")  # fmt: skip
    assert len([p for p in found if "overlapping" in p]) == 7  # gpu010 .. gpu016


def test_range_and_single_host_overlap(tmp_path: Path) -> None:
    f = write(tmp_path, "      gpu005: {address: 10.20.5.5}\n"
                        "      gpu[001:008]: {address: 10.20.1.1}\n")  # fmt: skip
    assert errors(f) == [f"{f}:14:7: error: overlapping entries: 'gpu[001:008]' and 'gpu005' "
                         f"(at {f}:13:7) both name host 'gpu005'"]  # fmt: skip


def test_duplicate_addresses_name_both_lines(tmp_path: Path) -> None:
    f = write(tmp_path, "      gpu[001:004]: {address: 10.20.1.1}\n"
                        "      gpu[005:008]: {address: 10.20.1.4}\n")  # fmt: skip
    found = errors(f)
    assert len(found) == 1
    assert found[0].startswith(f"{f}:14:") and f"(at {f}:13:7)" in found[0]
    assert "duplicate address '10.20.1.4'" in found[0]


@pytest.mark.parametrize(
    ("entry", "what"),
    [
        ('{address: "10.0.{x}.1"}', "bad placeholder {x}"),
        ('{address: "10.0.{rack}.{n}"}', "needs hosts_per_rack"),
        ('{address: "10.0.0.{n!r}"}', "bad placeholder"),
        ("{address: 255.255.255.250}", "run past 255.255.255.255"),
        ("{hosts_per_rack: 0}", "must be between 1 and"),
        ("{address: 10.0.0.1, color: red}", "unknown key 'color'"),
    ],
)
def test_bad_range_entries(tmp_path: Path, entry: str, what: str) -> None:
    f = write(tmp_path, f"      gpu[01:16]: {entry}\n")
    found = errors(f)
    assert any(p.startswith(f"{f}:13:") and what in p for p in found), found


def test_n_needs_one_numeric_range(tmp_path: Path) -> None:
    f = write(tmp_path, '      r[1:2]n[1:2]: {address: "10.0.0.{n}"}\n')
    assert "needs a key with one numeric range" in errors(f)[0]


def test_show_prints_the_expansion(tmp_path: Path) -> None:
    f = write(tmp_path, "      gpu[001:032]:\n        address: 10.20.1.1\n"
                        "        hosts_per_rack: 16\n")  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-c", "from gpuprov.cli import main; main()", "inventory", "show", str(f)],
        capture_output=True, text=True, timeout=120, env={"NO_COLOR": "1", "COLUMNS": "200"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert (f"{f}:13:7: range of 32 hosts: gpu001 .. gpu032, addresses 10.20.1.1 .. "
            "10.20.1.32, racks r01, r02") in out.stdout  # fmt: skip
    assert "gpu017" in out.stdout and "rack=r02" in out.stdout
