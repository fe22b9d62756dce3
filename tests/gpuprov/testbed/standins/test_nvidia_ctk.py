"""nvidia-ctk stand-in: real containerd/docker configuration and CDI specs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib

from ruamel.yaml import YAML

CTK = "/usr/bin/nvidia-ctk"
USER_CONTAINERD = """version = 2
root = "/var/lib/containerd-custom"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "mirror01:5000/pause:3.9"

[plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]
  endpoint = ["https://mirror01:5000"]
"""


def ctk_host(host, loaded="580.95.05"):
    host.extract("nvidia-container-toolkit-base", "1.17.8")
    host.extract("libnvidia-compute-580", "580.95.05")
    host.profile("hgx-h100-8")
    host.load_module(loaded)


def test_containerd_drop_in_keeps_user_config(host):
    ctk_host(host)
    main = host.root / "etc/containerd/config.toml"
    main.parent.mkdir(parents=True)
    main.write_text(USER_CONTAINERD)
    before = tomllib.loads(USER_CONTAINERD)
    proc = host.run(
        CTK,
        "runtime",
        "configure",
        "--runtime=containerd",
        "--drop-in-config=" + str(host.root / "etc/containerd/conf.d/99-nvidia.toml"),
        "--config",
        str(main),
    )
    assert proc.returncode == 0, proc.stderr
    after = tomllib.loads(main.read_text())
    assert after.pop("imports") == [str(host.root / "etc/containerd/conf.d/*.toml")]
    assert after == before  # user settings untouched
    dropin = tomllib.loads((host.root / "etc/containerd/conf.d/99-nvidia.toml").read_text())
    nvidia = dropin["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["nvidia"]
    assert nvidia["runtime_type"] == "io.containerd.runc.v2"
    assert nvidia["options"]["BinaryName"] == "/usr/bin/nvidia-container-runtime"
    # Idempotent: a second run changes nothing in the main config.
    text = main.read_text()
    assert (
        host.run(
            CTK,
            "runtime",
            "configure",
            "--runtime=containerd",
            "--drop-in-config=" + str(host.root / "etc/containerd/conf.d/99-nvidia.toml"),
            "--config",
            str(main),
        ).returncode
        == 0
    )
    assert main.read_text() == text


def test_containerd_default_paths_and_fresh_config(host):
    ctk_host(host)
    assert host.run(CTK, "runtime", "configure", "--runtime=containerd").returncode == 0
    main = tomllib.loads((host.root / "etc/containerd/config.toml").read_text())
    assert main["imports"] == ["/etc/containerd/conf.d/*.toml"]
    tomllib.loads((host.root / "etc/containerd/conf.d/99-nvidia.toml").read_text())


def test_containerd_bad_toml_is_not_overwritten(host):
    ctk_host(host)
    main = host.root / "etc/containerd/config.toml"
    main.parent.mkdir(parents=True)
    main.write_text("version = [\n")
    proc = host.run(CTK, "runtime", "configure", "--runtime=containerd")
    assert proc.returncode == 1 and "unable to load config" in proc.stderr
    assert main.read_text() == "version = [\n"


def test_docker_merges_daemon_json(host):
    ctk_host(host)
    daemon = host.root / "etc/docker/daemon.json"
    daemon.parent.mkdir(parents=True)
    daemon.write_text(
        json.dumps(
            {
                "registry-mirrors": ["https://mirror01:5000"],
                "runtimes": {"crun": {"path": "/usr/bin/crun"}},
            }
        )
    )
    proc = host.run(CTK, "runtime", "configure", "--runtime=docker", "--set-as-default")
    assert proc.returncode == 0, proc.stderr
    config = json.loads(daemon.read_text())
    assert config["registry-mirrors"] == ["https://mirror01:5000"]
    assert config["runtimes"]["crun"] == {"path": "/usr/bin/crun"}
    assert config["runtimes"]["nvidia"] == {"args": [], "path": "nvidia-container-runtime"}
    assert config["default-runtime"] == "nvidia"


def test_cdi_generate_and_list(host):
    ctk_host(host)
    proc = host.run(CTK, "cdi", "generate", "--output=/etc/cdi/nvidia.yaml")
    assert proc.returncode == 0, proc.stderr
    text = (host.root / "etc/cdi/nvidia.yaml").read_text()
    spec = YAML(typ="safe").load(text)
    assert spec["kind"] == "nvidia.com/gpu"
    assert spec["cdiVersion"]
    names = [d["name"] for d in spec["devices"]]
    assert names == [str(i) for i in range(8)] + ["all"]
    assert any(
        m["hostPath"].endswith("libcuda.so.580.95.05") for m in spec["containerEdits"]["mounts"]
    )
    listed = host.run(CTK, "cdi", "list")
    assert "Found 9 CDI devices" in listed.stderr
    assert listed.stdout.splitlines() == [f"nvidia.com/gpu={n}" for n in names]
    typed = YAML(typ="safe").load(
        host.run(CTK, "cdi", "generate", "--device-name-strategy=type-index").stdout
    )
    assert [d["name"] for d in typed["devices"]][:2] == ["gpu0", "gpu1"]


def test_cdi_generate_fails_on_mismatch(host):
    ctk_host(host, loaded="570.133.20")
    proc = host.run(CTK, "cdi", "generate", "--output=/etc/cdi/nvidia.yaml")
    assert proc.returncode == 1 and "Driver/library version mismatch" in proc.stderr
    assert not (host.root / "etc/cdi/nvidia.yaml").exists()


def test_cdi_spec_mounts_what_the_host_has_and_the_simulated_driver(host):
    ctk_host(host)
    spec = YAML(typ="safe").load(host.run(CTK, "cdi", "generate").stdout)
    mounts = {m["hostPath"] for m in spec["containerEdits"]["mounts"]}
    # nvidia-smi came with nvidia-utils, not extracted here: left out, like the real tool does.
    assert "/usr/bin/nvidia-smi" not in mounts
    assert "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.580.95.05" in mounts
    # The stand-in driver's state travels with it (profile, loaded module, GPU UUID seed).
    assert {"/etc/gpuprov-sim", "/run/nvidia-sim", "/etc/machine-id"} <= mounts
    host.extract("nvidia-utils-580", "580.95.05")
    spec = YAML(typ="safe").load(host.run(CTK, "cdi", "generate").stdout)
    assert "/usr/bin/nvidia-smi" in {m["hostPath"] for m in spec["containerEdits"]["mounts"]}
    hooks = spec["containerEdits"]["hooks"]
    assert {h["path"] for h in hooks} == {"/usr/bin/nvidia-cdi-hook"}
    assert (host.root / "usr/bin/nvidia-cdi-hook").exists()


def test_cdi_hook_links_in_the_container_root(host, tmp_path):
    ctk_host(host)
    bundle = tmp_path / "bundle"
    (bundle / "rootfs").mkdir(parents=True)
    (bundle / "config.json").write_text(json.dumps({"root": {"path": "rootfs"}}))
    state = json.dumps({"ociVersion": "1.0.2", "id": "c1", "bundle": str(bundle)})
    hook = str(host.root / "usr/bin/nvidia-cdi-hook")
    link = "libcuda.so.1::/usr/lib/x86_64-linux-gnu/libcuda.so"
    for argv in (["create-symlinks", "--link", link], ["update-ldcache", "--folder", "/usr/lib"]):
        proc = subprocess.run(
            [sys.executable, hook, *argv], input=state, capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr
    made = bundle / "rootfs/usr/lib/x86_64-linux-gnu/libcuda.so"
    assert made.is_symlink() and os.readlink(made) == "libcuda.so.1"
    bad = subprocess.run(
        [sys.executable, hook, "enable-cuda-compat"], input=state, capture_output=True, text=True
    )
    assert bad.returncode == 1 and "unsupported command 'enable-cuda-compat'" in bad.stderr
