"""Parsing apt-get's output, on output captured from real apt-get runs in an isolated
root (tests/fixtures/apt/): the closure, the URIs with sizes, and the reasons a package
cannot be resolved."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpuprov.bundle.aptroot import INST_RE, URI_RE, DebRef, read_status_file, unresolvable
from gpuprov.errors import InputError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "apt"


def test_simulate_output_names_the_whole_closure():
    text = (FIXTURES / "simulate-nginx-registry.txt").read_text()
    refs = [
        DebRef(*m.groups()) for line in text.splitlines() if (m := INST_RE.fullmatch(line.strip()))
    ]
    assert len(refs) == text.count("\nInst ") == 18
    by_name = {r.name: r for r in refs}
    assert by_name["docker-registry"] == DebRef("docker-registry", "2.8.2+ds1-1", "amd64")
    assert by_name["nginx-common"].arch == "all"
    # An epoch is kept in the version and becomes %3a in the archive file name.
    assert by_name["libbpf1"].version == "1:1.1.2-0+deb12u1"
    assert by_name["libbpf1"].filename == "libbpf1_1%3a1.1.2-0+deb12u1_amd64.deb"


def test_print_uris_output_gives_url_file_and_size():
    lines = (FIXTURES / "print-uris-nginx-registry.txt").read_text().splitlines()
    uris = [URI_RE.fullmatch(line) for line in lines]
    assert all(uris)
    first = uris[0]
    assert first.group(2) == "docker-registry_2.8.2+ds1-1_amd64.deb"
    assert int(first.group(3)) == 4954916
    assert sum(int(u.group(3)) for u in uris) > 5_000_000
    # debian-security lists no hash: the line ends after the size (and a space).
    libssl = next(u for u in uris if u.group(2).startswith("libssl3_"))
    assert libssl.group(4) == "" and int(libssl.group(3)) == 2039888


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("simulate-unresolvable.txt", ["Unable to locate package no-such-pkg",
                                       "Version '9.9' for 'docker-registry' was not found"]),
        ("simulate-unmet-depends.txt", ["needs-missing : Depends: libdoesnotexist1 (>= 2) but it is not installable"]),
    ],
)  # fmt: skip
def test_unresolvable_names_each_package(fixture, expected):
    assert unresolvable((FIXTURES / fixture).read_text()) == expected


def test_status_file_is_checked_before_apt_reads_it(tmp_path):
    good = tmp_path / "status"
    good.write_text("Package: bash\nStatus: install ok installed\nVersion: 5.2.15-2+b7\n")
    assert "bash" in read_status_file(good)
    for text, why in (
        ("", "lists no packages"),
        ("Package: Bad Name\nStatus: install ok installed\n", "no valid Package"),
        ("not deb822 at all\n", "not a dpkg status file"),
    ):
        good.write_text(text)
        with pytest.raises(InputError, match=why):
            read_status_file(good)
