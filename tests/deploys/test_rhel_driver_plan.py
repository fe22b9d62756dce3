"""The RHEL driver step planned against HostState output (pyinfra's @fake connector, no
host): the module stream enabled, its profile and the driver set at the exact release in
one transaction with dnf's versionlock plugin, the release locked; locks that would block
a change deleted first; a converged host plans nothing. The commands run for real with
dnf in an installroot in tests/gpuprov/bundle/test_rhel_far_side.py; a RHEL host itself
cannot be booted here (docs/deploys.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from hoststate import host_state_output  # noqa: E402
from plan_harness import gpu_host, plan  # noqa: E402
from test_gpu_stack_plan import commands, find  # noqa: E402

V = "580.95.05"
NEWER = "580.105.08"
EL = "1.el9"
DRIVER_SET = {  # what the deploy pins on an HGX H100 (NVSwitch: fabric manager)
    "nvidia-driver": f"{V}-{EL}",
    "kmod-nvidia-open-dkms": f"{V}-{EL}",
    "nvidia-persistenced": f"{V}-{EL}",
    "nvidia-fabric-manager": f"{V}-1",
}
# What the profile brought beside them (installed at the same release).
PROFILE_EXTRAS = {
    "nvidia-driver-libs": f"{V}-{EL}",
    "nvidia-driver-cuda": f"{V}-{EL}",
    "nvidia-driver-cuda-libs": f"{V}-{EL}",
    "nvidia-kmod-common": f"{V}-{EL}",
}
PLUGIN = {"python3-dnf-plugin-versionlock": "4.3.0-20.el9"}
OTHERS = {"nvidia-container-toolkit": "1.17.8-1"}  # not the driver's: never locked


def lock_lines(packages: dict[str, str]) -> list[str]:
    """versionlock.list as `dnf versionlock add` writes it (epoch 3 for the driver's)."""
    return [
        f"{n}-{'0' if n == 'nvidia-fabric-manager' else '3'}:{v}.*"
        for n, v in sorted(packages.items())
    ]


def driver_ops(state: str, **host_kw):
    ops = plan(gpu_host(**host_kw), state)
    install = find(ops, "NVIDIA driver 5")
    lock = find(ops, "Lock the driver")
    return ops, install, lock


def test_fresh_host_installs_the_exact_release_with_the_plugin_then_locks_it() -> None:
    ops, install, lock = driver_ops(host_state_output("rhel9"))
    assert install.commands == [
        "dnf -y -q module enable nvidia-driver:580-open",
        # one transaction: the stream's fm profile and the exact packages (the stream's
        # newer releases stay out), and the versionlock plugin
        "dnf -y -q install --allowerasing @nvidia-driver:580-open/fm "
        f"kmod-nvidia-open-dkms-{V}-{EL} nvidia-driver-{V}-{EL} nvidia-fabric-manager-{V}-1 "
        f"nvidia-persistenced-{V}-{EL} python3-dnf-plugin-versionlock",
    ]
    assert lock.commands == [
        "dnf versionlock add $({ printf '%s\\n' "
        f"kmod-nvidia-open-dkms-{V}-{EL} nvidia-driver-{V}-{EL} "
        f"nvidia-fabric-manager-{V}-1 nvidia-persistenced-{V}-{EL}; "
        "rpm -qa --qf '%{NAME}-%{VERSION}-%{RELEASE}\\n' 'nvidia-*' 'libnvidia-*' "
        f"'kmod-nvidia-*' | grep -F -e -{V}-; }} | sort -u)"
    ]
    names = [o.name for o in ops]
    assert names.index(install.name) < names.index(lock.name)
    assert not any("module install" in c or "switch-to" in c for c in commands(ops))


def test_no_nvswitch_no_fabric_manager_default_profile() -> None:
    _, install, lock = driver_ops(host_state_output("rhel9"), profile="h100-pcie")
    assert "@nvidia-driver:580-open/default" in install.commands[-1]
    assert "fabric" not in install.commands[-1] and "fabric" not in lock.commands[0]


def test_converged_and_locked_plans_nothing() -> None:
    installed = {**DRIVER_SET, **PROFILE_EXTRAS, **PLUGIN, **OTHERS}
    state = host_state_output(
        "rhel9", packages=installed, versionlock=lock_lines({**DRIVER_SET, **PROFILE_EXTRAS})
    )
    _, install, lock = driver_ops(state)
    assert install.commands == [] and install.noop.startswith("module nvidia-driver:580-open")
    assert lock.commands == [] and "nvidia-driver-cuda-" in lock.noop


def test_a_lost_lock_is_added_again() -> None:
    installed = {**DRIVER_SET, **PROFILE_EXTRAS, **PLUGIN}
    locks = lock_lines(DRIVER_SET)  # the profile's other packages not locked
    _, install, lock = driver_ops(host_state_output("rhel9", packages=installed, versionlock=locks))
    assert install.commands == []
    assert lock.commands and lock.commands[0].startswith("dnf versionlock add ")


def test_converged_host_without_the_plugin_gets_it() -> None:
    installed = {**DRIVER_SET, **PROFILE_EXTRAS}
    _, install, _ = driver_ops(host_state_output("rhel9", packages=installed, versionlock=[]))
    assert install.commands[-1].endswith(" python3-dnf-plugin-versionlock")


def test_upgrade_in_the_branch_deletes_the_old_locks_before_installing() -> None:
    """The old release's locks would hide the new one from dnf: they go first, all of
    them (the profile's too); the stream stays (same branch): no reset."""
    installed = {**DRIVER_SET, **PROFILE_EXTRAS, **PLUGIN, **OTHERS}
    locks = lock_lines({**DRIVER_SET, **PROFILE_EXTRAS}) + ["nvidia-container-toolkit-0:1.17.8-1.*"]
    state = host_state_output("rhel9", packages=installed, versionlock=locks)
    _, install, lock = driver_ops(state, version=NEWER)
    delete, enable, txn = install.commands
    assert delete.split()[:3] == ["dnf", "versionlock", "delete"]
    assert sorted(delete.split()[3:]) == sorted({**DRIVER_SET, **PROFILE_EXTRAS})
    assert "nvidia-container-toolkit" not in delete  # the site's own lock stays
    assert enable == "dnf -y -q module enable nvidia-driver:580-open"
    assert f"nvidia-driver-{NEWER}-{EL}" in txn.split()
    assert f"nvidia-fabric-manager-{NEWER}-1" in txn.split()  # at the driver's version
    assert "python3-dnf-plugin-versionlock" not in txn  # installed already
    assert f"grep -F -e -{NEWER}-" in lock.commands[0]


def test_branch_change_resets_the_module_first() -> None:
    old = "570.172.08"
    installed = {n: v.replace(V, old) for n, v in {**DRIVER_SET, **PLUGIN}.items()}
    state = host_state_output("rhel9", packages=installed, versionlock=lock_lines(installed))
    _, install, _ = driver_ops(state)
    cmds = install.commands
    assert cmds[0].startswith("dnf versionlock delete ")
    assert cmds[1:3] == [
        "dnf -y -q module reset nvidia-driver",
        "dnf -y -q module enable nvidia-driver:580-open",
    ]
    assert f"nvidia-driver-{V}-{EL}" in cmds[3].split()


def test_a_downgrade_is_refused_naming_it() -> None:
    from pyinfra.api.exceptions import OperationError

    installed = {n: v.replace(V, NEWER) for n, v in DRIVER_SET.items()}
    with pytest.raises(Exception) as info:
        driver_ops(host_state_output("rhel9", packages=installed))
    err = info.value
    while not isinstance(err, OperationError) and err.__cause__ is not None:
        err = err.__cause__
    assert f"nvidia-driver {NEWER}-{EL} -> {V}-{EL}" in str(info.value) + str(err)
