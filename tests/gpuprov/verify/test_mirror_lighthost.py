"""`gpuprov verify` of a mirror host through the real CLI, the way a site runs it: the
bundle imported at /srv/gpuprov/current on a light host (read over SSH, with the id of the
bundle its services were started on), its three real
services (nginx, docker-registry, `gpuprov mirror serve`) answering at that host's
address (started in its network namespace), checked from this machine. Then the same
host with no bundle imported is an error naming the path. Root only (light hosts)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from mirror_services import build_bundle, missing_tools, start_services  # noqa: E402

pytestmark = pytest.mark.host


def run_json(cmd: list[str]) -> tuple[int, dict]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.stdout.startswith("{"), f"exit {proc.returncode}: {proc.stderr}"
    return proc.returncode, json.loads(proc.stdout)


def test_verify_reads_the_imported_bundle_over_ssh(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("light hosts need root")
    if missing_tools():
        pytest.skip(f"not installed: {', '.join(missing_tools())}")
    from gpuprov.testbed.lighthosts import LightHostLab

    bundle = build_bundle(tmp_path)
    with LightHostLab(1, prefix="mvf", names=["mirror01"]) as lab:
        host = lab.hosts[0]
        # what `gpuprov bundle import` leaves: bundles/<id>/ and a `current` link to it
        served = host.root_dir / "srv/gpuprov/bundles/b1"
        shutil.copytree(bundle.dir, served, symlinks=True)
        (host.root_dir / "srv/gpuprov/current").symlink_to("bundles/b1")
        # what `gpuprov apply` leaves: the id of the bundle the services were started on
        bundle_id = json.loads((bundle.dir / "manifest.json").read_text())["id"]
        serving = host.root_dir / "etc/gpuprov/mirror/serving"
        serving.parent.mkdir(parents=True, exist_ok=True)
        serving.write_text(bundle_id + "\n")
        services = start_services(served, tmp_path, address=host.address, netns=host.netns)
        try:
            inventory = tmp_path / "site.yaml"
            inventory.write_text(
                "cluster:\n  name: mirror-lab\n"
                f"  mirror: {{host: mirror01, keyring: {bundle.keyring}, apt_port: {services.apt_port}, "
                f"registry_port: {services.registry_port}, models_port: {services.models_port}}}\n"
                f"  ssh: {{user: root, key: {lab.key_path}, known_hosts: {lab.known_hosts_path}}}\n"
                "groups:\n  mirrors:\n    role: mirror\n    hosts:\n"
                f"      mirror01: {{address: {host.address}}}\n"
            )
            cmd = [sys.executable, "-m", "gpuprov.cli", "verify", str(inventory), "-o", "json"]
            code, doc = run_json(cmd)
            assert code == 0 and doc["ok"], doc["hosts"][0]["checks"][0]
            checks = {c["name"]: c for c in doc["hosts"][0]["checks"]}
            assert list(checks) == ["bundle", "apt", "registry", "models"]
            assert checks["bundle"]["detail"] == f"bundle {bundle_id[:12]} imported and served"
            assert (
                f"http://{host.address}" not in checks["apt"]["detail"]
            )  # passed: no URL to blame
            services.stop("registry")
            code, doc = run_json(cmd)
            checks = {c["name"]: c for c in doc["hosts"][0]["checks"]}
            assert code == 1 and not checks["registry"]["ok"]
            assert f"{host.address}:{services.registry_port}/v2/" in checks["registry"]["detail"]
            serving.write_text("ab" * 32 + "\n")  # imported since: apply has not switched
            code, doc = run_json(cmd)
            checks = {c["name"]: c for c in doc["hosts"][0]["checks"]}
            assert code == 1 and checks["bundle"]["detail"] == (
                f"services run on bundle abababababab, the imported one is {bundle_id[:12]}: "
                "run `gpuprov apply` to switch them"
            )
            (host.root_dir / "srv/gpuprov/current").unlink()
            code, doc = run_json(cmd)
            assert code == 1
            assert doc["errors"] == {
                "mirror01": "/srv/gpuprov/current/manifest.json: not found (import a bundle)"
            }
        finally:
            services.stop_all()
