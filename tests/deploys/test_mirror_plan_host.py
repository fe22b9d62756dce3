"""`gpuprov plan` on an inventory with a mirror host, over real SSH to light hosts: the
mirror's state section runs on a real Debian userland (what mirror_state.command() prints
is what parse() reads), the refusal before any import names the command to run, and after
`import_bundle` the plan lists the mirror host's operations (mirror hosts get the mirror
deploy from `deploys/playbook.py`, which plan and apply share). Light hosts have no
systemd: applying the units needs a VM (test_mirror_vm.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mirror_lab import mirror_site, mirror_site_inventory
from signed_bundles import exported, write_signed_bundle

pytestmark = pytest.mark.host

GPUPROV = [sys.executable, "-c", "from gpuprov.cli import main; main()"]


@pytest.fixture(scope="module")
def lab() -> Iterator[object]:
    with mirror_site("mpl") as lab:
        yield lab


@pytest.fixture(scope="module")
def inventory(lab, tmp_path_factory) -> Path:
    return mirror_site_inventory(
        lab,
        tmp_path_factory.mktemp("inv") / "site.yaml",
        {
            "mirror": {"gpuprov_min_free_gb": 0.01},
            "gpu": {
                "gpuprov_stack": False,
                "gpuprov_preflight_ignore": ["gpus", "headers", "disk"],
            },
        },
    )


def plan(inventory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GPUPROV, "plan", str(inventory)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "250"},
    )


def bundle_files() -> dict[str, bytes]:
    """The parts of a bundle the mirror's facts look at (content is not read by plan)."""
    return {
        "apt/debian12/dists/gpuprov/InRelease": b"signed\n",
        "oci/oci-layout": b'{"imageLayoutVersion": "1.0.0"}\n',
        "oci/index.json": b'{"schemaVersion": 2, "manifests": []}\n',
        "models/repos/models/acme/tiny/refs.json": b"{}\n",
        "wheels/requirements-3.11.txt": b"gpuprov==0.1.0 --hash=sha256:" + b"0" * 64 + b"\n",
        "wheels/pip-24.3.1-py3-none-any.whl": b"PK",
    }


def test_no_bundle_yet_refuses_the_mirror_host_naming_the_import(inventory):
    done = plan(inventory)
    text = done.stdout + done.stderr
    assert done.returncode != 0, text
    assert "no bundle imported on the mirror host" in text and "gpuprov bundle import" in text
    assert "Traceback" not in text


def test_after_an_import_the_plan_lists_the_mirror_hosts_operations(
    lab, inventory, tmp_path_factory
):
    from gpuprov.aptrepo import generate_key
    from gpuprov.bundle.importer import import_bundle
    from gpuprov.bundle.remote import Remote
    from gpuprov.inventory.loader import load_inventory

    work = tmp_path_factory.mktemp("bundle")
    key = generate_key(work / "gnupg", "Site bundles", "bundle@gpuprov.invalid")
    keyring = key.export_public(work / "bundle.gpg")
    root = write_signed_bundle(work / "b", bundle_files(), key.home)
    media = exported(root, work / "media")
    result = import_bundle(media, Remote.mirror_of(load_inventory(inventory)), keyring)
    done = plan(inventory)
    text = done.stdout + done.stderr
    assert done.returncode == 0, text
    for op in (
        "System user gpuprov-mirror",
        f"apt source: bundle {result.bundle[:12]}",
        "Packages from the bundle: nginx, docker-registry",
        "gpuprov from the bundle's wheels (Python 3.11)",
        f"Registry storage of bundle {result.bundle[:12]}",
        "gpuprov-registry.service",
    ):
        assert op in text, (op, text)
