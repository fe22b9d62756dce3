"""`gpuprov verify` of a mirror host against its REAL services on loopback (nginx, Debian's
docker-registry, `gpuprov mirror serve`) serving a bundle built here: all pass; then each
fault fails its service's verdict with the reason (wrong key, registry down, manifest
missing or another digest, models down, model missing). Plus the GPU-host side of a wrong
key: real apt, with the deb822 source the mirror client renders, refuses the repository."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from mirror_services import IMAGE_REF, MODEL, build_bundle, free_port, missing_tools, start_services  # noqa: E402

from gpuprov.bundle.catalog import (  # noqa: E402
    CatalogError,
    CatalogImage,
    parse_catalog,
    read_bundle_dir,
    served_name,
)
from gpuprov.inventory.model import Host, MirrorRef, SSHSettings  # noqa: E402
from gpuprov.verify.mirror import mirror_verdict  # noqa: E402

if missing_tools():
    pytest.skip(
        f"not installed: {', '.join(missing_tools())} (make system-deps)", allow_module_level=True
    )

MIRROR = Host("mirror01", "127.0.0.1", "mirror", "mirrors", SSHSettings(), None, None)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    work = tmp_path_factory.mktemp("mirror-verify")
    bundle = build_bundle(work)
    services = start_services(bundle.dir, work)
    try:
        yield bundle, services, work
    finally:
        services.stop_all()


def ref_for(services, keyring: Path | None, **ports) -> MirrorRef:
    values = {
        "apt_port": services.apt_port,
        "registry_port": services.registry_port,
        "models_port": services.models_port,
    }
    return MirrorRef("mirror01", keyring=keyring, **(values | ports))


def verdicts(report) -> dict[str, tuple[bool, str]]:
    return {c.name: (c.ok, c.detail) for c in report.verdict.checks}


def test_catalog_names_what_the_bundle_carries(site) -> None:
    bundle, _, _ = site
    cat = read_bundle_dir(bundle.dir)
    assert cat.apt == [("debian12", "gpuprov")]
    assert [(i.ref, i.repository, i.reference) for i in cat.images] == [
        (IMAGE_REF, "gpuprov-test/tiny", "1.0")
    ]
    assert cat.images[0].digest.startswith("sha256:") and cat.models == [("dataset", MODEL)]
    assert cat.problems == []


def test_every_service_serves_the_bundle(site) -> None:
    bundle, services, _ = site
    report = mirror_verdict(MIRROR, ref_for(services, bundle.keyring), read_bundle_dir(bundle.dir))
    got = verdicts(report)
    assert report.ok, got
    assert list(got) == ["apt", "registry", "models"]
    assert bundle.key.fingerprint in got["apt"][1]
    assert IMAGE_REF in got["registry"][1] and "all 1 repositories" in got["models"][1]


def test_wrong_key_fails_apt_naming_the_signer(site) -> None:
    bundle, services, _ = site
    got = verdicts(
        mirror_verdict(MIRROR, ref_for(services, bundle.other_keyring), read_bundle_dir(bundle.dir))
    )
    ok, detail = got["apt"]
    assert not ok and "NO_PUBKEY" in detail and bundle.key.fingerprint[-16:] in detail
    assert got["registry"][0] and got["models"][0]  # the other services are judged alone


def test_no_trusted_keyring_is_a_failure_not_a_pass(site) -> None:
    bundle, services, _ = site
    ok, detail = verdicts(
        mirror_verdict(MIRROR, ref_for(services, None), read_bundle_dir(bundle.dir))
    )["apt"]
    assert not ok and "cluster.mirror.keyring" in detail


def test_registry_down(site) -> None:
    bundle, services, _ = site
    ref = ref_for(services, bundle.keyring, registry_port=free_port())
    ok, detail = verdicts(mirror_verdict(MIRROR, ref, read_bundle_dir(bundle.dir)))["registry"]
    assert not ok and "/v2/" in detail and "refused" in detail.lower()


def test_manifest_missing_and_digest_mismatch(site) -> None:
    bundle, services, _ = site
    cat = read_bundle_dir(bundle.dir)
    real = cat.images[0]
    absent = CatalogImage(
        "nvcr.io/gpuprov-test/absent:2.0", "gpuprov-test/absent", "2.0", real.digest
    )
    other = dataclasses.replace(real, digest="sha256:" + "0" * 64)
    ok, detail = verdicts(
        mirror_verdict(
            MIRROR, ref_for(services, bundle.keyring), dataclasses.replace(cat, images=[absent])
        )
    )["registry"]
    assert not ok and "absent:2.0: manifest not served" in detail and "HTTP 404" in detail
    ok, detail = verdicts(
        mirror_verdict(
            MIRROR, ref_for(services, bundle.keyring), dataclasses.replace(cat, images=[other])
        )
    )["registry"]
    assert not ok and f"served manifest {real.digest}, the bundle has sha256:000" in detail


def test_models_down(site) -> None:
    bundle, services, _ = site
    ref = ref_for(services, bundle.keyring, models_port=free_port())
    ok, detail = verdicts(mirror_verdict(MIRROR, ref, read_bundle_dir(bundle.dir)))["models"]
    assert not ok and "/healthz" in detail


def test_model_missing(site) -> None:
    bundle, services, _ = site
    cat = read_bundle_dir(bundle.dir)
    cat = dataclasses.replace(cat, models=[*cat.models, ("model", "acme/not-imported")])
    ok, detail = verdicts(mirror_verdict(MIRROR, ref_for(services, bundle.keyring), cat))["models"]
    assert not ok and "model acme/not-imported: not served" in detail and "HTTP 404" in detail


def test_verify_cli_on_a_mirror_host_table_and_json(site, tmp_path: Path) -> None:
    bundle, services, _ = site
    inventory = tmp_path / "site.yaml"
    inventory.write_text(
        "cluster:\n  name: mirror-only\n"
        f"  mirror: {{host: mirror01, keyring: {bundle.keyring}, apt_port: {services.apt_port}, "
        f"registry_port: {services.registry_port}, models_port: {services.models_port}}}\n"
        "groups:\n  mirrors:\n    role: mirror\n    hosts:\n      mirror01: {address: 127.0.0.1}\n"
    )
    cmd = [
        sys.executable,
        "-m",
        "gpuprov.cli",
        "verify",
        str(inventory),
        "--bundle",
        str(bundle.dir),
    ]
    table = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert table.returncode == 0, table.stdout + table.stderr
    assert "mirror01" in table.stdout and "ok" in table.stdout
    out = subprocess.run([*cmd, "-o", "json"], capture_output=True, text=True, timeout=120)
    doc = json.loads(out.stdout)
    assert doc["ok"] is True and [c["name"] for c in doc["hosts"][0]["checks"]] == [
        "apt",
        "registry",
        "models",
    ]
    inventory.write_text(
        inventory.read_text().replace(str(bundle.keyring), str(bundle.other_keyring))
    )
    bad = subprocess.run([*cmd, "-o", "json"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1
    apt = json.loads(bad.stdout)["hosts"][0]["checks"][0]
    assert apt["name"] == "apt" and not apt["ok"] and "NO_PUBKEY" in apt["detail"]


def _apt_fixtures():
    """tests/gpuprov/aptrepo's isolated apt-get (its own sources, lists and trust)."""
    path = Path(__file__).parents[1] / "aptrepo" / "conftest.py"
    spec = importlib.util.spec_from_file_location("aptrepo_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_gpu_host_refuses_a_mirror_whose_key_it_does_not_trust(site, tmp_path: Path) -> None:
    """The deb822 source the mirror client writes, with a keyring that did not sign the
    mirror's repository: apt-get update refuses it (NO_PUBKEY), and verify says the same."""
    from gpuprov.aptrepo.sources import deb822_source

    bundle, services, _ = site
    apt = _apt_fixtures().Apt(tmp_path / "apt")
    url = f"http://127.0.0.1:{services.apt_port}/debian12"
    for keyring, refused in ((bundle.other_keyring, True), (bundle.keyring, False)):
        apt.configure(url, keyring, suite="gpuprov")
        source = (tmp_path / "apt" / "test.sources").read_text()
        assert source == deb822_source(url, "gpuprov", ["main"], str(keyring))
        assert "trusted" not in source.lower()
        update = apt.run("update")
        text = update.stdout + update.stderr
        if refused:
            assert update.returncode != 0 or "NO_PUBKEY" in text, text
            assert "NO_PUBKEY" in text and "is not signed" in text
            assert apt.run("install", "-s", "gpuprov-mirror-test").returncode != 0
        else:
            assert update.returncode == 0 and "NO_PUBKEY" not in text, text
            assert (
                "Inst gpuprov-mirror-test" in apt.run("install", "-s", "gpuprov-mirror-test").stdout
            )
    ref = ref_for(services, bundle.other_keyring)
    ok, detail = verdicts(mirror_verdict(MIRROR, ref, read_bundle_dir(bundle.dir)))["apt"]
    assert not ok and "NO_PUBKEY" in detail


@pytest.mark.parametrize(
    ("ref", "served"),
    [
        ("nvcr.io/nvidia/cuda:12.8.0-base-ubuntu24.04", ("nvidia/cuda", "12.8.0-base-ubuntu24.04")),
        ("ubuntu:24.04", ("library/ubuntu", "24.04")),
        ("10.0.0.5:5000/team/app", ("team/app", "latest")),
        ("ghcr.io/o/i@sha256:" + "a" * 64, ("o/i", "sha256:" + "a" * 64)),
        ("nvcr.io/../etc:1", None),
        ("nvcr.io/x/y:bad tag", None),
    ],
)
def test_served_name(ref, served) -> None:
    assert served_name(ref) == served


def test_bad_catalog_input_is_named() -> None:
    with pytest.raises(CatalogError, match="manifest.json"):
        parse_catalog(b"{not json", None)
