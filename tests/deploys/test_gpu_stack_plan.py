"""The GPU stack planned against given host facts (no host, nothing run): which steps
change what, per OS, and that a converged host plans nothing. The same deploys run for
real on test-bed VMs in test_gpu_node_vm.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from hoststate import host_state_output  # noqa: E402
from plan_harness import changes, extras_output, gpu_host, plan  # noqa: E402

from gpuprov.operations.files import sha256  # noqa: E402
from gpuprov.paths import CUDA_PROFILE, NOUVEAU_CONF  # noqa: E402
from gpuprov.rendering import render  # noqa: E402

DEB_580 = "580.95.05-1"
CONVERGED_PACKAGES = {
    "nvidia-driver-580-open": DEB_580,
    "nvidia-kernel-open-580": DEB_580,
    "nvidia-persistenced": DEB_580,
    "nvidia-fabricmanager": DEB_580,
    "cuda-toolkit-12-8": "12.8.1-1",
    "cuda-toolkit-13-0": "13.0.2-1",
    "containerd": "1.6.20~ds1-1+b1",
    "nvidia-container-toolkit": "1.17.8-1",
    "datacenter-gpu-manager-4-cuda13": "1:4.4.1-1",
}
RUNNING = ("active", "enabled")
ALL_RUNNING = {
    u: RUNNING for u in ("nvidia-persistenced", "nvidia-fabricmanager", "nvidia-dcgm", "containerd")
}


def converged_digests() -> dict[str, str]:
    return {
        NOUVEAU_CONF: sha256(render("blacklist-nouveau.conf.j2")),
        CUDA_PROFILE: sha256(render("cuda.sh.j2", default="13.0", versions=["12.8", "13.0"])),
    }


def converged_state(**overrides) -> str:
    values = dict(
        packages=CONVERGED_PACKAGES,
        held=tuple(n for n in CONVERGED_PACKAGES if n != "containerd"),
        module="580.95.05",
        services=ALL_RUNNING,
        cuda_link="/usr/local/cuda-13.0",
    )
    values.update(overrides)
    return host_state_output("debian12", **values)


def converged_extras(**overrides) -> str:
    values = dict(digests=converged_digests(), cdi_driver="580.95.05", containerd=True)
    values.update(overrides)
    return extras_output(**values)


def commands(ops) -> list[str]:
    return [c for op in ops for c in op.commands]


def find(ops, needle: str):
    hits = [op for op in ops if needle in op.name]
    assert hits, f"no op named like {needle!r} in {[o.name for o in ops]}"
    return hits[0]


def test_converged_host_plans_nothing() -> None:
    ops = plan(gpu_host(), converged_state(), converged_extras())
    assert changes(ops) == [], [(o.name, o.commands) for o in changes(ops)]
    assert all(op.noop for op in ops)  # every step says why it has nothing to do


def test_fresh_debian12_hgx_h100() -> None:
    ops = plan(gpu_host(), host_state_output("debian12"))
    cmds = commands(ops)
    # One apt update for the whole apply, before the first install.
    assert [c for c in cmds if "apt-get -q update" in c] == ["apt-get -q update"]
    drv = find(ops, "NVIDIA driver 580.95.05")
    install = next(c for c in drv.commands if " install " in c)
    # Fabric manager in the driver's transaction, at exactly the driver's version.
    for spec in (
        "nvidia-driver-580-open=580.95.05-1",
        "nvidia-kernel-open-580=580.95.05-1",
        "nvidia-persistenced=580.95.05-1",
        "nvidia-fabricmanager=580.95.05-1",
    ):
        assert spec in install.split()
    assert drv.commands[-1] == (
        "apt-mark hold nvidia-driver-580-open nvidia-fabricmanager "
        "nvidia-kernel-open-580 nvidia-persistenced"
    )
    assert find(ops, "Reboot once").commands == []  # nothing loaded, nouveau absent
    assert find(ops, "nvidia-fabricmanager").commands == [
        "systemctl enable nvidia-fabricmanager.service",
        "systemctl start nvidia-fabricmanager.service",
    ]
    assert find(ops, "Rebuild the initramfs").commands == ["update-initramfs -u -k all"]
    (cuda_cmd,) = find(ops, "/usr/local/cuda ->").commands
    # Through the packages' `cuda` alternative when registered, else a plain link.
    assert "update-alternatives --set cuda /usr/local/cuda-13.0;" in cuda_cmd
    assert "else ln -sfn /usr/local/cuda-13.0 /usr/local/cuda.gpuprov-new" in cuda_cmd
    assert find(ops, "Register the nvidia runtime").commands == [
        "nvidia-ctk runtime configure --runtime=containerd "
        "--drop-in-config=/etc/containerd/conf.d/99-nvidia.toml"
    ]
    assert find(ops, "CDI spec").commands == [
        "nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml"
    ]
    dcgm = find(ops, "DCGM 4")
    assert any("datacenter-gpu-manager-4-cuda13" in c for c in dcgm.commands)
    # CDI and the runtime come after the (possible) reboot: the new module must be loaded.
    names = [o.name for o in ops]
    assert names.index(find(ops, "Reboot once").name) < names.index(find(ops, "CDI spec").name)


def test_upgrade_570_to_580_one_transaction_one_reboot_new_cdi() -> None:
    old = {
        "nvidia-driver-570-open": "570.133.20-1",
        "nvidia-kernel-open-570": "570.133.20-1",
        "nvidia-persistenced": "570.133.20-1",
        "nvidia-fabricmanager-570": "570.133.20-1",
        **{k: v for k, v in CONVERGED_PACKAGES.items() if "580" not in k and "persist" not in k},
    }
    old.pop("nvidia-fabricmanager")
    state = converged_state(
        packages=old, held=tuple(n for n in old if n != "containerd"), module="570.133.20"
    )
    ops = plan(gpu_host(), state, converged_extras(cdi_driver="570.133.20"))
    drv = find(ops, "NVIDIA driver 580.95.05")
    assert drv.commands[0] == (
        "apt-mark unhold nvidia-driver-570-open nvidia-fabricmanager-570 "
        "nvidia-kernel-open-570 nvidia-persistenced"
    )
    install = next(c for c in drv.commands if " install " in c).split()
    assert "nvidia-fabricmanager=580.95.05-1" in install
    assert "nvidia-driver-580-open=580.95.05-1" in install
    assert {"nvidia-driver-570-open-", "nvidia-fabricmanager-570-"} <= set(install)
    reboot = find(ops, "Reboot once")
    assert "<refuse_control_node>" in reboot.commands  # checked on the host, then reboot
    assert sum("reboot" in c and "sleep" in c for c in commands(ops)) == 1
    assert find(ops, "nvidia-fabricmanager").commands == [
        "systemctl restart nvidia-fabricmanager.service"
    ]
    assert find(ops, "CDI spec").commands == [
        "nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml"
    ]


def test_loaded_module_behind_installed_reboots_once() -> None:
    # Installed and held at 580, still running 570: the reboot the last apply missed.
    ops = plan(gpu_host(), converged_state(module="570.133.20"), converged_extras())
    assert [o.name for o in changes(ops)] == [find(ops, "Reboot once").name]


def test_nouveau_loaded_means_initramfs_and_one_reboot() -> None:
    ops = plan(gpu_host(), converged_state(nouveau=True), converged_extras())
    changed = changes(ops)
    assert [o.name for o in changed] == [find(ops, "Reboot once").name]
    # The blacklist was already in place: no rebuild; a fresh one rebuilds.
    extras = converged_extras(digests={CUDA_PROFILE: converged_digests()[CUDA_PROFILE]})
    ops = plan(gpu_host(), converged_state(nouveau=True), extras)
    assert [o.name for o in changes(ops)][:2] == [
        find(ops, "Blacklist nouveau").name,
        find(ops, "Rebuild the initramfs").name,
    ]
    assert (
        find(ops, "Blacklist nouveau")
        .commands[0]
        .endswith(
            "mv -f /etc/modprobe.d/blacklist-nouveau.conf.gpuprov-new "
            "/etc/modprobe.d/blacklist-nouveau.conf"
        )
    )


def test_stale_cdi_spec_is_regenerated_alone() -> None:
    ops = plan(gpu_host(), converged_state(), converged_extras(cdi_driver="570.133.20"))
    assert [o.name for o in changes(ops)] == [find(ops, "CDI spec").name]


def test_newer_dcgm_is_never_downgraded() -> None:
    pkgs = dict(CONVERGED_PACKAGES)
    pkgs["datacenter-gpu-manager-4-cuda13"] = "1:4.4.1-1"
    ops = plan(
        gpu_host(gpuprov_dcgm_version="1:4.2.0-1"),
        converged_state(packages=pkgs),
        converged_extras(),
    )
    step = find(ops, "DCGM datacenter-gpu-manager-4-cuda13")
    assert step.commands == []
    assert step.noop == (
        "skipped, never downgraded: datacenter-gpu-manager-4-cuda13 1:4.4.1-1 is newer "
        "than the pinned 1:4.2.0-1"
    )
    assert changes(ops) == []


def test_non_nvswitch_host_has_same_op_sequence_and_no_fabric_manager() -> None:
    a = plan(gpu_host("hgx-h100-8"), host_state_output("debian12"))
    b = plan(gpu_host("h100-pcie"), host_state_output("debian12"))
    assert len(a) == len(b)
    assert find(b, "Fabric manager").noop == "no NVSwitch in this system: not needed"
    assert not any("fabricmanager" in c for c in commands(b))


def test_ubuntu2204_proprietary_names_and_versions() -> None:
    ops = plan(gpu_host("hgx-a100-8", modules="proprietary"), host_state_output("ubuntu2204"))
    install = next(c for c in find(ops, "NVIDIA driver 5").commands if " install " in c).split()
    # Ubuntu's packaging of the driver (NVIDIA's Ubuntu repositories): cuda-drivers-580
    # is versioned -1 there, the proprietary modules are nvidia-dkms-580, the daemon is
    # in nvidia-compute-utils-580 (tests/fixtures/ubuntu/SOURCES.md).
    assert "nvidia-driver-580=580.95.05-0ubuntu1" in install
    assert "nvidia-dkms-580=580.95.05-0ubuntu1" in install
    assert "nvidia-compute-utils-580=580.95.05-0ubuntu1" in install
    assert not any(a.startswith(("cuda-drivers-", "nvidia-kernel-580")) for a in install)
    assert "nvidia-fabricmanager=580.95.05-1" in install


def test_ubuntu2404_570_fabricmanager_has_branch_in_its_name() -> None:
    ops = plan(gpu_host(version="570.133.20", cuda=("12.8",)), host_state_output("ubuntu2404"))
    install = next(c for c in find(ops, "NVIDIA driver 5").commands if " install " in c).split()
    assert "nvidia-fabricmanager-570=570.133.20-1" in install
    assert "nvidia-driver-570-open=570.133.20-0ubuntu1" in install
    dcgm = find(ops, "DCGM 4")
    assert any("datacenter-gpu-manager-4-cuda12" in c for c in dcgm.commands)


def test_rhel9_module_stream_fabric_manager_and_versionlock() -> None:
    ops = plan(gpu_host(), host_state_output("rhel9"))
    cmds = commands(ops)
    # tests/deploys/test_rhel_driver_plan.py: the whole transaction and its lock.
    assert "dnf -y -q module enable nvidia-driver:580-open" in cmds
    install = next(c for c in cmds if c.startswith("dnf -y -q install --allowerasing @"))
    assert "nvidia-fabric-manager-580.95.05-1" in install.split()
    lock = next(c for c in cmds if c.startswith("dnf versionlock add"))
    assert "nvidia-fabric-manager-580.95.05-1" in lock.split()
    assert "dracut -f --regenerate-all" in cmds
    assert not any(c.startswith("apt") or "apt-get" in c for c in cmds)


def test_missing_headers_installed_before_the_driver() -> None:
    ops = plan(gpu_host(), host_state_output("debian12", headers=False))
    hdr = find(ops, "Kernel headers")
    assert any("linux-headers-6.1.0-26-amd64" in c for c in hdr.commands)
    names = [o.name for o in ops]
    assert names.index(hdr.name) < names.index(find(ops, "NVIDIA driver 580").name)


def test_mirror_source_and_hf_endpoint(tmp_path: Path) -> None:
    keyring = tmp_path / "mirror.gpg"
    keyring.write_bytes(b"\x99\x01binary-keyring")
    mirror = {
        "apt_url": "http://10.0.0.5:8080/apt",
        "suite": "gpuprov",
        "keyring": str(keyring),
        "hf_endpoint": "http://10.0.0.5:8090",
        "registry": "10.0.0.5:5000",
    }
    ops = plan(gpu_host(), converged_state(), converged_extras(), gpuprov_mirror_client=mirror)
    src = find(ops, "apt source: the site mirror")
    assert src.commands[-1] == "apt-get -q update"
    assert "/etc/apt/keyrings/gpuprov-mirror.gpg" in src.commands[0]
    assert "/etc/apt/sources.list.d/gpuprov-mirror.sources" in src.commands[1]
    assert any("/etc/environment.d/90-gpuprov-hf.conf" in c for c in commands(ops))
    assert any("/etc/containerd/certs.d/docker.io/hosts.toml" in c for c in commands(ops))


@pytest.mark.parametrize("runtime", ["docker", "podman", "none"])
def test_runtime_choice_keeps_the_op_sequence(runtime: str) -> None:
    a = plan(gpu_host(runtime="containerd"), host_state_output("debian12"))
    b = plan(gpu_host(runtime=runtime), host_state_output("debian12"))
    # docker has one step more: the CDI feature in daemon.json.
    assert len(a) + (runtime == "docker") == len(b)
    if runtime == "podman":
        assert any(c.endswith("install podman") for c in commands(b))
        assert find(b, "nvidia runtime").noop == "podman reads CDI specs itself"
        assert not any("nvidia-ctk runtime" in c for c in commands(b))
    if runtime == "docker":
        assert find(b, "Register the nvidia runtime").commands == [
            "nvidia-ctk runtime configure --runtime=docker"
        ]
        assert any(c.endswith("install docker.io") for c in commands(b))


def test_inventory_os_must_match_the_host() -> None:
    from dataclasses import replace

    from gpuprov.engine.refusal import HostRefused

    me = gpu_host()
    me = replace(me, stack=replace(me.stack, os="ubuntu2204"))
    with pytest.raises(HostRefused, match="stack.os ubuntu2204, the host runs debian12"):
        plan(me, host_state_output("debian12"))


def test_cuda_major_change_swaps_the_held_dcgm_variant() -> None:
    pkgs = {k: v for k, v in CONVERGED_PACKAGES.items() if "dcgm" not in k and "manager" not in k}
    pkgs["datacenter-gpu-manager-4-cuda12"] = "1:4.4.1-1"
    state = converged_state(packages=pkgs, held=tuple(n for n in pkgs if n != "containerd"))
    step = find(plan(gpu_host(), state, converged_extras()), "DCGM 4")
    assert step.commands[0] == "apt-mark unhold datacenter-gpu-manager-4-cuda12"
    install = next(c for c in step.commands if " install " in c).split()
    assert "datacenter-gpu-manager-4-cuda13" in install
    assert "datacenter-gpu-manager-4-cuda12-" in install


ALT = "/etc/alternatives/cuda"


@pytest.mark.parametrize(
    ("link", "alternative", "changes_expected"),
    [
        (ALT, ("manual", "/usr/local/cuda-13.0"), False),  # pinned where we want it
        (ALT, ("auto", "/usr/local/cuda-13.0"), True),  # right now, but the next toolkit moves it
        (ALT, ("manual", "/usr/local/cuda-12.8"), True),  # someone chose another toolkit
        ("/usr/local/cuda-13.0", None, False),  # no alternative: a plain link is kept
        ("/usr/local/cuda-12.8", None, True),
    ],
)
def test_cuda_default_through_the_alternative(link, alternative, changes_expected) -> None:
    state = converged_state(cuda_link=link, cuda_alternative=alternative)
    step = find(plan(gpu_host(), state, converged_extras()), "/usr/local/cuda ->")
    assert bool(step.commands) is changes_expected


def docker_mirror_plan(daemon_json: str | None, tmp_path: Path):
    keyring = tmp_path / "mirror.gpg"
    keyring.write_bytes(b"\x99\x01binary-keyring")
    mirror = {
        "apt_url": "http://10.0.0.5/apt",
        "keyring": str(keyring),
        "registry": "10.0.0.5:5000",
    }
    pkgs = {k: v for k, v in CONVERGED_PACKAGES.items() if k != "containerd"}
    pkgs["docker.io"] = "20.10.24+dfsg1-1+b3"
    services = {**ALL_RUNNING, "docker": RUNNING}
    state = converged_state(packages=pkgs, held=tuple(pkgs), services=services)
    extras = converged_extras(containerd=False, docker=True, docker_daemon=daemon_json)
    return plan(gpu_host(runtime="docker"), state, extras, gpuprov_mirror_client=mirror)


def test_docker_registry_mirror_merged_into_the_users_daemon_json(tmp_path: Path) -> None:
    import base64
    import json

    user = '{"log-driver": "journald", "registry-mirrors": ["https://other.example"],\n'
    user += ' "runtimes": {"nvidia": {"path": "nvidia-container-runtime", "args": []}}}'
    ops = docker_mirror_plan(user, tmp_path)
    (write,) = find(ops, "docker: pull Docker Hub").commands
    written = json.loads(base64.b64decode(write.split("printf %s ")[1].split(" ")[0]))
    assert written["log-driver"] == "journald"
    assert written["runtimes"]["nvidia"]["path"] == "nvidia-container-runtime"
    assert written["registry-mirrors"] == ["https://other.example", "http://10.0.0.5:5000"]
    assert written["insecure-registries"] == ["10.0.0.5:5000"]
    # docker reads daemon.json at start only: the converged, running docker restarts.
    assert find(ops, "docker running").commands == ["systemctl restart docker.service"]

    (cdi,) = find(ops, "docker: inject GPUs through CDI").commands
    final = json.loads(base64.b64decode(cdi.split("printf %s ")[1].split(" ")[0]))
    assert final == {**written, "features": {"cdi": True}}

    again = docker_mirror_plan(json.dumps(final), tmp_path)
    assert find(again, "docker: pull Docker Hub").commands == []
    assert find(again, "docker: inject GPUs through CDI").commands == []
    assert find(again, "docker running").commands == []


def test_broken_daemon_json_refuses_the_host_naming_the_line(tmp_path: Path) -> None:
    from gpuprov.engine.refusal import HostRefused

    with pytest.raises(HostRefused, match=r"daemon.json line 2: not valid JSON"):
        docker_mirror_plan('{"a": 1,\n  oops}', tmp_path)


USER_DAEMON = '{"data-root": "/srv/docker", "features": {"buildkit": true}, "log-driver": "local"}'
SITE_MIRROR = {"apt_url": "http://10.0.0.5/apt", "suite": "gpuprov", "registry": "10.0.0.5:5000"}


def debian13_state(**overrides) -> str:
    values = dict(
        packages=CONVERGED_PACKAGES,
        held=tuple(n for n in CONVERGED_PACKAGES if n != "containerd"),
        module="580.95.05",
        services=ALL_RUNNING,
        cuda_link="/usr/local/cuda-13.0",
        kernel="6.12.48+deb13-amd64",
    )
    values.update(overrides)
    return host_state_output("debian13", **values)


def test_docker_daemon_json_gets_cdi_and_the_mirror_keeping_the_users_keys(tmp_path) -> None:
    import base64
    import json
    import shlex

    keyring = tmp_path / "site.gpg"
    keyring.write_bytes(b"key")
    mirror = {**SITE_MIRROR, "keyring": str(keyring)}
    me = gpu_host(runtime="docker")
    ops = plan(
        me,
        debian13_state(),
        converged_extras(docker_daemon=USER_DAEMON),
        gpuprov_mirror_client=mirror,
    )
    mirror_op = find(ops, "docker: pull Docker Hub images")
    cdi_op = find(ops, "docker: inject GPUs through CDI")

    def written(op) -> dict:
        # write_file_command: the file's content travels base64-encoded in a shell word.
        [command] = op.commands
        words = shlex.split(command)
        return json.loads(base64.b64decode(words[words.index("%s") + 1]))

    first, second = written(mirror_op), written(cdi_op)
    assert first["registry-mirrors"] == ["http://10.0.0.5:5000"] and "cdi" not in first["features"]
    # The CDI step merges into what the mirror step wrote: neither undoes the other.
    assert second == {
        "data-root": "/srv/docker",
        "features": {"buildkit": True, "cdi": True},
        "log-driver": "local",
        "registry-mirrors": ["http://10.0.0.5:5000"],
        "insecure-registries": ["10.0.0.5:5000"],
    }
    # Installed by this apply, so already started by its postinst with other settings:
    # restarted (a `start` would leave it running without CDI).
    assert find(ops, "docker running").commands == [
        "systemctl enable docker.service",
        "systemctl restart docker.service",
    ]
    # Debian 13 split the CLI out of docker.io: installed with it (verify runs it).
    assert any(c.endswith("install docker-cli docker.io") for c in commands(ops))
    # Converged: the same file (plus nvidia-ctk's runtimes.nvidia) plans no change.
    done = json.dumps({**second, "runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}})
    again = plan(
        me,
        debian13_state(
            packages={
                **CONVERGED_PACKAGES,
                "docker.io": "26.1.5+dfsg1-9+deb13u1+b1",
                "docker-cli": "26.1.5+dfsg1-9+deb13u1+b1",
            },
            services={**ALL_RUNNING, "docker": RUNNING},
        ),
        converged_extras(docker_daemon=done, docker=True),
        gpuprov_mirror_client=mirror,
    )
    container_ops = [o for o in changes(again) if "docker" in o.name or "CDI" in o.name]
    assert container_ops == [], [(o.name, o.commands) for o in container_ops]


def test_docker_daemon_json_that_is_not_an_object_refuses_the_host() -> None:
    from gpuprov.engine.refusal import HostRefused

    with pytest.raises(HostRefused, match="'features' must be an object"):
        plan(
            gpu_host(runtime="docker"),
            debian13_state(),
            converged_extras(docker_daemon='{"features": []}'),
        )


def test_podman_gets_a_registries_drop_in_and_no_daemon_restart(tmp_path) -> None:
    keyring = tmp_path / "site.gpg"
    keyring.write_bytes(b"key")
    mirror = {**SITE_MIRROR, "keyring": str(keyring)}
    ops = plan(
        gpu_host(runtime="podman"),
        debian13_state(),
        converged_extras(),
        gpuprov_mirror_client=mirror,
    )
    drop_in = find(ops, "podman: pull through the site registry")
    text = " ".join(drop_in.commands)
    assert "/etc/containers/registries.conf.d/50-gpuprov-mirror.conf" in text
    assert not any("daemon.json" in c for c in commands(ops))
    assert any(c.endswith("install podman") for c in commands(ops))
    assert find(ops, "Restart the runtime").noop == "no daemon"
