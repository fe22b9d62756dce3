"""The `cluster.bundle:` section: parsed into BundleSpec, every mistake reported with
FILE:LINE:COL (like the rest of the inventory)."""

from __future__ import annotations

from pathlib import Path

from gpuprov.inventory.loader import load_inventory

from .conftest import MINIMAL

KEYRING = "debian.gpg"


def with_bundle(section: str) -> str:
    return MINIMAL.replace("  mirror: {host: mirror01}\n", "  mirror: {host: mirror01}\n" + section)


GOOD = """\
  bundle:
    targets:
      debian12:
        sources:
          - url: http://deb.debian.org/debian
            suites: [bookworm, bookworm-updates]
            components: [main]
            keyring: debian.gpg
          - url: https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/
            suites: ["/"]
            keyring: debian.gpg
        base: {facts: facts.json, dpkg_status: status}
    mirror_os: debian12
    images: [nvcr.io/nvidia/cuda:12.8.0-base-ubuntu24.04, "registry.local:5000/tools/x@sha256:%s"]
    insecure_registries: ["registry.local:5000"]
    models:
      - {repo: acme/tiny, source: model, revision: main}
    python: ["3.11", "3.12"]
""" % ("a" * 64)


def files(tmp_path: Path) -> None:
    for name in (KEYRING, "facts.json", "status"):
        (tmp_path / name).write_text("x")
    (tmp_path / "model").mkdir()


def test_bundle_section_parses(write, tmp_path):
    files(tmp_path)
    c = load_inventory(write(with_bundle(GOOD)))
    b = c.bundle
    assert b is not None and list(b.targets) == ["debian12"]
    t = b.targets["debian12"]
    assert t.sources[0].suites == ("bookworm", "bookworm-updates")
    assert t.sources[0].keyring == tmp_path / KEYRING  # relative to the inventory
    assert t.sources[1].suites == ("/",) and t.sources[1].components == ()
    assert t.base.facts == tmp_path / "facts.json" and not t.base.minimal
    assert b.mirror_os == "debian12"
    assert b.images[0] == "nvcr.io/nvidia/cuda:12.8.0-base-ubuntu24.04"
    assert b.insecure_registries == ("registry.local:5000",)
    assert b.models[0].repo == "acme/tiny" and b.models[0].source == tmp_path / "model"
    assert b.python == ("3.11", "3.12")


def test_no_bundle_section_is_none(write):
    assert load_inventory(write(MINIMAL)).bundle is None


def located(problems, text: str) -> dict[str, str]:
    """message fragment -> 'LINE:COL' of each problem."""
    return {p.message: f"{p.location.line}:{p.location.col}" for p in problems(text)}


def test_each_mistake_is_named_where_it_is(problems, tmp_path):
    files(tmp_path)
    bad = (
        GOOD.replace("debian12:\n        sources", "debain12:\n        sources")
        .replace("mirror_os: debian12", "mirror_os: ubuntu2404")
        .replace('"3.11", "3.12"', "3.10")
        .replace("nvcr.io/nvidia/cuda:12.8.0-base-ubuntu24.04", "Not An Image")
    )
    found = located(problems, with_bundle(bad))
    text = with_bundle(bad).splitlines()
    line_of = {k: next(i + 1 for i, line in enumerate(text) if k in line) for k in
               ("debain12", "mirror_os", "python", "Not An Image")}  # fmt: skip
    msgs = "\n".join(f"{m} @ {loc}" for m, loc in found.items())
    assert any("unknown target OS 'debain12'" in m and "did you mean 'debian12'" in m
               and loc.startswith(f"{line_of['debain12']}:") for m, loc in found.items()), msgs  # fmt: skip
    assert any("mirror_os 'ubuntu2404' is not one of" in m for m in found), msgs
    assert any("quote the version" in m and loc.startswith(f"{line_of['python']}:")
               for m, loc in found.items()), msgs  # fmt: skip
    assert any("not an image reference: 'Not An Image'" in m
               and loc.startswith(f"{line_of['Not An Image']}:") for m, loc in found.items()), msgs  # fmt: skip


def test_sources_are_checked(problems, tmp_path):
    files(tmp_path)
    bad = GOOD.replace(
        "keyring: debian.gpg\n          - url", "keyring: missing.gpg\n          - url"
    )
    bad = bad.replace("http://deb.debian.org/debian\n", "ftp://deb.debian.org/debian\n")
    bad = bad.replace('suites: ["/"]', 'suites: ["/"]\n            components: [main]')
    found = "\n".join(str(p) for p in problems(with_bundle(bad)))
    assert "sources[0].url: expected an http(s):// or file:// URL, got 'ftp://" in found
    assert f"sources[0].keyring: file not found: {tmp_path / 'missing.gpg'}" in found
    assert "sources[1]: a flat repository ('/') has no components" in found


def test_unsigned_source_and_unknown_keys_are_refused(problems, tmp_path):
    files(tmp_path)
    bad = GOOD.replace("            keyring: debian.gpg\n          - url", "          - url")
    bad = bad.replace("    python:", "    pythons:")
    bad = bad.replace("base: {facts: facts.json, dpkg_status: status}", "base: everything")
    found = "\n".join(str(p) for p in problems(with_bundle(bad)))
    assert "sources[0]: missing `keyring` (the repository's signing key; never unsigned)" in found
    assert "unknown key 'pythons' in cluster.bundle; did you mean 'python'?" in found
    assert "base: expected `minimal` or a mapping of facts" in found
    assert ":" in found.splitlines()[0].split(": ")[0]  # FILE:LINE:COL first
