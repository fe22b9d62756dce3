"""A GPU host wired to its mirror by a real `gpuprov apply --only mirror-client`, on light
hosts: the mirror host's three services run in mirror01's network namespace (as on a
mirror host), gpu001 is a Debian root with apt and no other source. Pointed at a mirror
whose key it does not trust (cluster.mirror.keyring is another key), apt on gpu001
refuses the repository and the apply fails saying so; with the bundle keyring the same
apply wires it, apt installs from the mirror, a login shell sees HF_ENDPOINT, and a second
apply changes nothing. Root only (light hosts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "gpuprov" / "verify"))

from mirror_services import build_bundle, missing_tools, start_services  # noqa: E402

pytestmark = pytest.mark.host


def gpuprov(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpuprov.cli", *args],
        capture_output=True, text=True, cwd=cwd, stdin=subprocess.DEVNULL, timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip


def test_gpu_host_refuses_an_untrusted_mirror_then_installs_from_a_trusted_one(
    tmp_path: Path,
) -> None:
    if os.geteuid() != 0:
        pytest.skip("light hosts need root")
    if missing_tools():
        pytest.skip(f"not installed: {', '.join(missing_tools())}")
    from gpuprov.testbed.lighthosts import LightHostLab

    bundle = build_bundle(tmp_path)
    with LightHostLab(2, prefix="mcl", names=["mirror01", "gpu001"]) as lab:
        mirror, gpu = lab.hosts
        services = start_services(bundle.dir, tmp_path, address=mirror.address, netns=mirror.netns)
        try:
            inventory = tmp_path / "site.yaml"

            def write(keyring: Path) -> None:
                inventory.write_text(
                    "cluster:\n  name: wired\n"
                    '  stack: {os: debian12, driver: {branch: "580", version: "580.95.05"}}\n'
                    f"  mirror: {{host: mirror01, keyring: {keyring}, apt_port: {services.apt_port}, "
                    f"registry_port: {services.registry_port}, models_port: {services.models_port}}}\n"
                    f"  ssh: {{user: root, key: {lab.key_path}, known_hosts: {lab.known_hosts_path}}}\n"
                    "groups:\n"
                    "  gpu:\n    profile: hgx-h100-8\n"
                    "    vars: {gpuprov_min_free_gb: 0.1, gpuprov_preflight_ignore: [headers, gpus]}\n"
                    f"    hosts:\n      gpu001: {{address: {gpu.address}, rack: r01}}\n"
                    "  mirrors:\n    role: mirror\n"
                    f"    hosts:\n      mirror01: {{address: {mirror.address}, rack: r01}}\n"
                )

            apply = ["apply", str(inventory), "--limit", "gpu001", "--only", "mirror-client", "--yes", "--output", "json"]  # fmt: skip
            write(bundle.other_keyring)
            refused = gpuprov(*apply, cwd=tmp_path)
            assert refused.returncode == 4, refused.stdout + refused.stderr  # the canary halted
            failed = json.loads(refused.stdout)["rollout"]["failed"][0]
            assert failed["host"] == "gpu001" and "apt source: the site mirror" in failed["step"]
            assert "NO_PUBKEY" in failed["error"] and "is not signed" in failed["error"]
            source = lab.exec("gpu001", "cat /etc/apt/sources.list.d/gpuprov-mirror.sources").stdout
            assert f"URIs: http://{mirror.address}:{services.apt_port}/debian12\n" in source
            assert (
                "Signed-By: /etc/apt/keyrings/gpuprov-mirror.gpg" in source
                and "trusted" not in source
            )
            assert (
                lab.exec("gpu001", "apt-get install -s gpuprov-mirror-test", check=False).returncode
                != 0
            )

            write(bundle.keyring)  # the site fixes the inventory and resumes the rollout
            wired = gpuprov(
                "apply", str(inventory), "--resume", "--yes", "--output", "json", cwd=tmp_path
            )
            assert wired.returncode == 0, wired.stdout + wired.stderr
            assert (
                "Inst gpuprov-mirror-test"
                in lab.exec("gpu001", "apt-get install -s gpuprov-mirror-test").stdout
            )
            hf = f"http://{mirror.address}:{services.models_port}"
            login = lab.exec(
                "gpu001", "su - root -c 'echo $HF_ENDPOINT $HF_HUB_DISABLE_XET'"
            ).stdout
            assert login.split() == [hf, "1"]
            assert f"HF_ENDPOINT={hf}\n" in lab.exec("gpu001", "cat /etc/environment").stdout
            assert (
                f'DefaultEnvironment="HF_ENDPOINT={hf}"'
                in lab.exec("gpu001", "cat /etc/systemd/system.conf.d/gpuprov-mirror.conf").stdout
            )
            hosts_toml = lab.exec("gpu001", "cat /etc/containerd/certs.d/nvcr.io/hosts.toml").stdout
            assert f'[host."http://{mirror.address}:{services.registry_port}"]' in hosts_toml

            again = gpuprov(*apply, cwd=tmp_path)
            assert again.returncode == 0, again.stdout + again.stderr
            assert json.loads(again.stdout)["summary"]["changed"] == 0
        finally:
            services.stop_all()
