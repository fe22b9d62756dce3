"""node_verdict's own checks (CDI spec current, fabric manager == driver, DCGM, container),
on HostState script output and the real dcgmi capture."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "deploys"))

from hoststate import host_state_output  # noqa: E402
from plan_harness import gpu_host  # noqa: E402

from gpuprov.facts.host_state import parse_host_state  # noqa: E402
from gpuprov.verify.node import ProbeData, VerifyProbe, node_verdict  # noqa: E402

SPEC_580 = "cdiVersion: 0.5.0\n  - containerPath: /usr/lib/x86_64-linux-gnu/libcuda.so.580.95.05\n"
SPEC_570 = SPEC_580.replace("580.95.05", "570.133.20")


def checks(report) -> dict[str, tuple[bool, str]]:
    return {c.name: (c.ok, c.detail) for c in report.verdict.checks}


def state(fm: str | None = "580.95.05-1", fm_name: str = "nvidia-fabricmanager"):
    pkgs = {"nvidia-driver-580-open": "580.95.05-1"}
    if fm:
        pkgs[fm_name] = fm
    return parse_host_state(host_state_output("debian12", packages=pkgs, module="580.95.05"))


def test_stale_cdi_spec_is_named() -> None:
    r = node_verdict(gpu_host(), state(), ProbeData(cdi_spec=SPEC_570))
    ok, detail = checks(r)["cdi-spec"]
    assert not ok
    assert "driver 570.133.20, installed 580.95.05" in detail
    r = node_verdict(gpu_host(), state(), ProbeData(cdi_spec=SPEC_580))
    assert checks(r)["cdi-spec"][0]
    assert not checks(node_verdict(gpu_host(), state(), ProbeData()))["cdi-spec"][0]


def test_fabric_manager_version_mismatch_is_named() -> None:
    r = node_verdict(gpu_host(), state(fm="570.133.20-1"), ProbeData(cdi_spec=SPEC_580))
    ok, detail = checks(r)["fabricmanager-version"]
    assert not ok and "570.133.20-1 does not match driver 580.95.05" in detail
    assert "802" in detail
    r = node_verdict(gpu_host(), state(fm=None), ProbeData(cdi_spec=SPEC_580))
    assert checks(r)["fabricmanager-version"] == (False, "nvidia-fabricmanager is not installed")
    # The old branch's package (named per branch before 580) in place of the new one.
    r = node_verdict(
        gpu_host(),
        state(fm="570.133.20-1", fm_name="nvidia-fabricmanager-570"),
        ProbeData(cdi_spec=SPEC_580),
    )
    ok, detail = checks(r)["fabricmanager-version"]
    assert not ok
    assert detail.startswith(
        "nvidia-fabricmanager-570 570.133.20-1 installed instead of nvidia-fabricmanager "
        "for driver 580.95.05"
    )
    # No NVSwitch, no fabric manager check.
    r = node_verdict(gpu_host("h100-pcie"), state(fm=None), ProbeData(cdi_spec=SPEC_580))
    assert "fabricmanager-version" not in checks(r)


def test_dcgm_capture_and_missing_dcgmi(captures: Path) -> None:
    text = (captures / "azhpc-doc_h200_8gpu_dcgmi-diag-r1_dcgm3.1.8_550.127.08.txt").read_text()
    r = node_verdict(gpu_host(), state(), ProbeData(dcgm_rc=0, dcgm_output=text))
    assert "dcgm-diag" in checks(r)
    r = node_verdict(gpu_host(), state(), ProbeData())
    assert checks(r)["dcgm-diag"] == (False, "dcgmi is not installed")
    r = node_verdict(
        gpu_host(),
        state(),
        ProbeData(dcgm_rc=1, dcgm_output="Error: unable to connect to host engine"),
    )
    ok, detail = checks(r)["dcgm-diag"]
    assert not ok and "unable to connect" in detail


def test_container_not_run_is_said_not_passed() -> None:
    r = node_verdict(gpu_host(), state(), ProbeData(cdi_spec=SPEC_580))
    assert "container" not in checks(r)
    assert r.not_checked[0][0] == "container" and "only the CDI spec" in r.not_checked[0][1]
    eight = "".join(
        f"GPU {i}: NVIDIA H100 80GB HBM3 (UUID: GPU-{i:08x}-0000-0000-0000-000000000000)\n"
        for i in range(8)
    )
    probe = ProbeData(
        cdi_spec=SPEC_580, container_rc=0, container_how="docker run ...", container_output=eight
    )
    ok, detail = checks(node_verdict(gpu_host(runtime="docker"), state(), probe))["container"]
    assert (
        ok and detail == "8 × NVIDIA H100 80GB HBM3 in a docker container (CDI nvidia.com/gpu=all)"
    )
    # Fewer GPUs than the profile (a spec naming one GPU, a device gone): a failure.
    one = ProbeData(
        cdi_spec=SPEC_580,
        container_rc=0,
        container_how="docker run ...",
        container_output=eight.splitlines()[0],
    )
    ok, detail = checks(node_verdict(gpu_host(runtime="docker"), state(), one))["container"]
    assert not ok
    assert detail == (
        "a docker container sees 1 × NVIDIA H100 80GB HBM3; profile hgx-h100-8 has "
        "8 × NVIDIA H100 80GB HBM3"
    )
    probe = ProbeData(
        cdi_spec=SPEC_580,
        container_rc=125,
        container_how="docker run ...",
        container_output="docker: Error response from daemon: unresolvable CDI devices",
    )
    ok, detail = checks(node_verdict(gpu_host(runtime="docker"), state(), probe))["container"]
    assert not ok and "unresolvable CDI devices" in detail
    assert detail.startswith("the CDI spec has no device nvidia.com/gpu=all")


def test_probe_parses_its_own_sections() -> None:
    out = (
        "@@gpuprov:begin dcgm\n\n@@gpuprov:end dcgm 127\n"
        f"@@gpuprov:begin cdi\n{SPEC_570}\n@@gpuprov:end cdi 0\n"
        "@@gpuprov:begin container\ndocker run x\nGPU 0: H100\n@@gpuprov:end container 0\n"
    )
    probe = VerifyProbe().process(out.splitlines())
    assert probe.dcgm_rc is None
    assert probe.cdi_driver == "570.133.20"
    assert (probe.container_rc, probe.container_how) == (0, "docker run x")
    cmd = VerifyProbe().command(runtime="containerd", image="10.0.0.5:5000/cuda:13")
    assert "ctr run --rm --device nvidia.com/gpu=all" in cmd and "dcgmi diag -r 1" in cmd


def test_probe_script_runs_in_a_real_shell() -> None:
    import subprocess

    cmd = VerifyProbe().command(runtime="none", image=None)
    out = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, check=True).stdout
    probe = VerifyProbe().process(out.splitlines())
    # This machine has neither dcgmi nor a CDI spec; the container step is not attempted.
    assert probe.dcgm_rc is None and probe.cdi_spec is None and probe.container_rc is None
    assert probe.topology_rc is None  # no nvidia-smi here: its own check reports that


TOPO_A100 = "oyanghd_a100-sxm4-40gb_8gpu_topo-m_525.105.17.txt"  # 8x A100 SXM4, NV12 all-to-all


def _degrade(text: str, row: str, col: int, cell: str) -> str:
    lines = text.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith(f"{row}\t"))
    cells = lines[i].split("\t")
    cells[col + 1] = cell
    lines[i] = "\t".join(cells)
    return "\n".join(lines)


def test_nvlink_topology_on_a_real_hgx_capture(captures: Path) -> None:
    from gpuprov.parsers.topo import parse_topo_matrix
    from gpuprov.tables import get_profile
    from gpuprov.verify.verdicts import nvlink_topology

    text = (captures / TOPO_A100).read_text()
    a100 = get_profile("hgx-a100-8")
    good = nvlink_topology(parse_topo_matrix(text), a100)
    assert good.ok and good.detail == "NVLink all-to-all between 8 GPUs (NV12)"
    on_pcie = nvlink_topology(parse_topo_matrix(_degrade(text, "GPU0", 1, "SYS")), a100)
    assert not on_pcie.ok and "GPU0-GPU1 SYS" in on_pcie.detail
    fewer = nvlink_topology(parse_topo_matrix(_degrade(text, "GPU2", 5, "NV6")), a100)
    assert not fewer.ok and "GPU2-GPU5 NV6" in fewer.detail


def test_node_verdict_checks_topology_only_when_the_probe_read_it(captures: Path) -> None:
    text = (captures / TOPO_A100).read_text()
    host = gpu_host("hgx-a100-8")
    read = checks(node_verdict(host, state(), ProbeData(topology_rc=0, topology=text)))
    assert read["nvlink-topology"] == (True, "NVLink all-to-all between 8 GPUs (NV12)")
    # The rollout's nvidia-smi gate may not read the probe: no topology check, not a failure.
    assert "nvlink-topology" not in checks(node_verdict(host, state(), ProbeData()))
    failed = checks(node_verdict(host, state(), ProbeData(topology_rc=9, topology="NVML down")))
    assert failed["nvlink-topology"] == (False, "nvidia-smi topo -m failed: NVML down")
    garbage = checks(node_verdict(host, state(), ProbeData(topology_rc=0, topology="hello")))
    assert not garbage["nvlink-topology"][0] and "cannot read" in garbage["nvlink-topology"][1]
    pcie = checks(
        node_verdict(gpu_host("h100-pcie"), state(), ProbeData(topology_rc=0, topology=text))
    )
    assert "nvlink-topology" not in pcie  # no NVSwitch: nothing to require


def test_probe_reads_the_topology_section() -> None:
    out = "@@gpuprov:begin topo\n\tGPU0\nGPU0\t X \n@@gpuprov:end topo 0\n"
    probe = VerifyProbe().process(out.splitlines())
    assert probe.topology_rc == 0 and probe.topology.startswith("\tGPU0")
    missing = "@@gpuprov:begin topo\n\n@@gpuprov:end topo 127\n"
    assert VerifyProbe().process(missing.splitlines()).topology_rc is None
    assert "nvidia-smi topo -m" in VerifyProbe().command()


DIGEST = "sha256:" + "ab" * 32


def run_probe_with_recording_ctr(tmp_path: Path, args: dict) -> list[str]:
    """Run the probe's command in a real shell with a `ctr` that records its arguments
    (this machine has no containerd); the ctr argv lines, in order."""
    import os
    import re
    import subprocess

    log = tmp_path / "ctr.argv"
    ctr = tmp_path / "bin" / "ctr"
    ctr.parent.mkdir(parents=True)
    ctr.write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    ctr.chmod(0o755)
    cmd = VerifyProbe().command(**args)
    env = {**os.environ, "PATH": f"{ctr.parent}:{os.environ['PATH']}"}
    subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, check=True, env=env)
    # the container's name carries the shell's pid: make it stable for comparison
    return [re.sub(r"gpuprov-verify-[0-9]+", "gpuprov-verify-PID", ln) for ln in
            log.read_text().splitlines()]  # fmt: skip


def test_container_gate_uses_the_registry_scheme_ca_and_digest(tmp_path: Path) -> None:
    """Issue 13, item 11: the gate pulled with --plain-http whatever the registry's scheme."""
    from gpuprov.verify.node import container_gate_args

    ca = "/usr/local/share/ca-certificates/site.crt"
    mirror = {"registry": "mirror01:5000", "registry_scheme": "https", "registry_ca": ca}
    image = f"mirror01:5000/nvidia/cuda:13.0-base@{DIGEST}"
    host = gpu_host(gpuprov_verify_image=image, gpuprov_mirror_client=mirror)
    args = container_gate_args(host)
    assert args == {"runtime": "containerd", "image": image, "plain_http": False, "ca_file": ca}
    assert run_probe_with_recording_ctr(tmp_path / "https", args) == [
        f"image pull --tlscacert {ca} {image}",  # TLS verified against the site CA, by digest
        f"run --rm --device nvidia.com/gpu=all {image} gpuprov-verify-PID nvidia-smi -L",
    ]
    # An http registry (as the inventory says): plain HTTP for it, and only for it.
    mirror = {"registry": "mirror01:5000", "registry_scheme": "http"}
    host = gpu_host(gpuprov_verify_image="mirror01:5000/cuda:13", gpuprov_mirror_client=mirror)
    pulls = run_probe_with_recording_ctr(tmp_path / "http", container_gate_args(host))
    assert pulls[0] == "image pull --plain-http mirror01:5000/cuda:13"
    host = gpu_host(gpuprov_verify_image="nvcr.io/nvidia/cuda:13", gpuprov_mirror_client=mirror)
    pulls = run_probe_with_recording_ctr(tmp_path / "other", container_gate_args(host))
    assert pulls[0] == "image pull nvcr.io/nvidia/cuda:13"  # another registry: https, verified


def test_container_gate_refuses_what_is_not_an_image_reference() -> None:
    import pytest

    from gpuprov.verify.node import container_gate_args

    for bad in ("mirror01:5000/cuda:13; touch /tmp/x", "mirror01:5000/cuda:13\n",
                f"mirror01:5000/cuda@sha256:{'ab' * 31}"):  # fmt: skip
        with pytest.raises(ValueError, match="not an image reference"):
            container_gate_args(gpu_host(gpuprov_verify_image=bad))
    mirror = {"registry": "m:5000", "registry_scheme": "https", "registry_ca": "ca.crt; id"}
    with pytest.raises(ValueError, match="registry_ca"):
        container_gate_args(
            gpu_host(gpuprov_verify_image="m:5000/c:1", gpuprov_mirror_client=mirror)
        )


def test_container_gate_follows_the_hosts_nearest_mirror_without_the_var() -> None:
    """Wired from cluster.mirror (no gpuprov_mirror_client var): an image on the host's
    mirror registry is pulled the way that registry serves (its scheme), others over https."""
    from gpuprov.inventory.mirrors import MirrorChoice
    from gpuprov.inventory.model import Host, MirrorRef, SSHSettings
    from gpuprov.verify.node import container_gate_args

    mirror = Host("mirror01", "10.0.0.5", "mirror", "m", SSHSettings(), None, None)
    for scheme, plain in (("http", True), ("https", False)):
        choice = MirrorChoice(mirror, MirrorRef("mirror01", scheme=scheme), "same rack r01")
        host = gpu_host(gpuprov_verify_image="10.0.0.5:5000/nvidia/cuda:13")
        assert container_gate_args(host, choice)["plain_http"] is plain
        other = gpu_host(gpuprov_verify_image="nvcr.io/nvidia/cuda:13")
        assert container_gate_args(other, choice)["plain_http"] is False
