"""The GPU test image (gpuprov.testbed.gpuimage) runs the stand-in nvidia-smi with nothing
but what the CDI spec mounts: unpacked, the spec's mounts copied to their container
paths, run in a chroot (root: marker `host`)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from ruamel.yaml import YAML

from gpuprov.parsers.gpu_list import parse_gpu_list

pytestmark = [pytest.mark.host, pytest.mark.timeout(900)]


def test_image_runs_nvidia_smi_from_the_cdi_mounts(host, tmp_path):
    from gpuprov.testbed.gpuimage import TAG, ensure_gpu_image

    host.extract("nvidia-container-toolkit-base", "1.17.8")
    host.extract("libnvidia-compute-580", "580.95.05")
    host.extract("nvidia-utils-580", "580.95.05")
    host.profile("hgx-h100-8")
    host.load_module("580.95.05")
    spec = YAML(typ="safe").load(host.run("/usr/bin/nvidia-ctk", "cdi", "generate").stdout)

    layout = ensure_gpu_image("trixie")
    root = tmp_path / "container"
    subprocess.run(
        ["umoci", "raw", "unpack", "--image", f"{layout}:{TAG}", str(root)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    assert not (root / "usr/bin/nvidia-smi").exists()  # nothing NVIDIA in the image itself
    alone = subprocess.run(
        ["chroot", str(root), "/usr/bin/python3", "-c", "print('ok')"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert alone.stdout == "ok\n", alone.stderr
    for mount in spec["containerEdits"]["mounts"]:
        src = host.root / mount["hostPath"].lstrip("/")
        dst = root / mount["containerPath"].lstrip("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=True)
        else:
            shutil.copy2(src, dst)
    proc = subprocess.run(
        [shutil.which("chroot") or "chroot", str(root), "/usr/bin/nvidia-smi", "-L"],
        capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    gpus = parse_gpu_list(proc.stdout)
    assert len(gpus) == 8 and {g.name for g in gpus} == {"NVIDIA H100 80GB HBM3"}
    # The UUIDs are the host's (its machine id travels in with the spec).
    on_host = parse_gpu_list(host.run("/usr/bin/nvidia-smi", "-L").stdout)
    assert [g.uuid for g in gpus] == [g.uuid for g in on_host]
