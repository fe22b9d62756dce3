"""verify's container check on what docker 26 and podman 5 really printed on the Debian 13
test-bed VM, one capture per runtime and fault (tests/fixtures/container/README.md): each
failure is named by its own reason, with the runtime's exit code and last line."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpuprov.facts.verify_probe import VerifyProbe
from gpuprov.tables import get_profile
from gpuprov.verify.node import container_check

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "container"
PROFILE = get_profile("hgx-h100-8")

# fault -> how the check's detail starts ({runtime} filled in).
REASONS = {
    "stale-spec": "the CDI spec mounts driver files the host does not have",
    "device-missing": "the CDI spec has no device nvidia.com/gpu=all",
    "host-device-missing": (
        "the CDI spec names a device node the host lacks (/dev/nvidia-modeset): check the "
        "driver's modules are loaded, then regenerate the spec (nvidia-ctk cdi generate)"
    ),
    "not-pullable": "the image cannot be pulled from the registry",
    "daemon-down": "the {runtime} daemon is not running",
}
CAPTURES = sorted(p.stem for p in FIXTURES.glob("*.txt"))


def check_of(capture: str):
    runtime = capture.split("-", 1)[0]
    probe = VerifyProbe().process((FIXTURES / f"{capture}.txt").read_text().splitlines())
    assert probe.container_how.startswith(f"{runtime} run --rm --network=none --device")
    return runtime, probe, container_check(runtime, probe, PROFILE)


def test_every_fault_was_captured_for_both_runtimes() -> None:
    expected = {f"{rt}-{fault}" for rt in ("docker", "podman") for fault in (*REASONS, "ok")}
    expected.discard("podman-daemon-down")  # podman has no daemon
    assert set(CAPTURES) == expected


@pytest.mark.parametrize("runtime", ["docker", "podman"])
def test_a_working_container_passes_with_what_it_saw(runtime: str) -> None:
    _, _, check = check_of(f"{runtime}-ok")
    assert (check.ok, check.detail) == (
        True,
        f"8 × NVIDIA H100 80GB HBM3 in a {runtime} container (CDI nvidia.com/gpu=all)",
    )


@pytest.mark.parametrize("capture", [c for c in CAPTURES if not c.endswith("-ok")])
def test_each_failure_is_named_by_its_own_reason(capture: str) -> None:
    runtime, probe, check = check_of(capture)
    fault = capture.split("-", 1)[1]
    assert not check.ok
    assert probe.container_rc not in (None, 0)
    assert check.detail.startswith(REASONS[fault].format(runtime=runtime)), check.detail
    last = probe.container_output.strip().splitlines()[-1]
    assert check.detail.endswith(f"exited {probe.container_rc}: {last[:200]}")
    # The reasons are told apart: no other fault's reason appears.
    others = [r.format(runtime=runtime) for f, r in REASONS.items() if f != fault]
    assert not any(check.detail.startswith(o) for o in others)
