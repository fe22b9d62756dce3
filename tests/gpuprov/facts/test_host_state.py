"""HostState: the script really runs here (sh and dash; no GPU, so NVIDIA sections report
absent), and through pyinfra's own @local connector, quoting included. nvidia-smi paths
are exercised with small executables on PATH that print real captured output / the real
NVML error message, since this machine has no GPU."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from gpuprov import tables
from gpuprov.facts.host_state import (
    SCRIPT,
    HostState,
    NvidiaSmiXml,
    ServiceState,
    parse_host_state,
    split_sections,
)
from gpuprov.parsers import ParseError
from gpuprov.parsers.lspci import parse_lspci
from gpuprov.parsers.system import parse_os_release

SECTIONS = {
    "os-release", "kernel", "headers", "secureboot", "nouveau", "lspci", "nvidia-module",
    "nvswitch", "packages", "holds", "versionlock", "df", "dpkg", "nvidia-smi", "services",
    "cdi", "cuda",
}  # fmt: skip


def run_script(shell: str, path_prefix: Path | None = None) -> str:
    env = dict(os.environ)
    if path_prefix is not None:
        env["PATH"] = f"{path_prefix}:{env['PATH']}"
    proc = subprocess.run(
        [shell, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr  # nothing leaks outside a section
    return proc.stdout


def fake_tool(tmp_path: Path, name: str, body: str) -> Path:
    tool = tmp_path / name
    tool.write_text("#!/bin/sh\n" + body)
    tool.chmod(0o755)
    return tmp_path


@pytest.mark.parametrize("shell", ["sh", "dash"])
def test_script_is_posix(shell):
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} not installed")
    subprocess.run([shell, "-n", "-c", SCRIPT], check=True)


@pytest.mark.parametrize("shell", ["sh", "dash", "bash"])
def test_runs_on_this_machine(shell):
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} not installed")
    out = run_script(shell)
    assert set(split_sections(out)) == SECTIONS
    d = parse_host_state(out)
    assert d.problems == []
    assert d.dpkg is not None and d.dpkg.clean  # this machine has no interrupted install
    assert d.os == parse_os_release(Path("/etc/os-release").read_text())
    assert d.kernel == os.uname().release
    assert d.headers_present == (
        Path(f"/lib/modules/{d.kernel}/build").is_dir()
        or Path(f"/usr/src/linux-headers-{d.kernel}").is_dir()
    )
    assert d.nouveau_loaded == Path("/sys/module/nouveau").is_dir()
    if shutil.which("lspci"):
        live = subprocess.run(["lspci", "-nn"], capture_output=True, text=True).stdout
        assert d.pci_devices == parse_lspci(live)
    else:
        assert d.pci_devices is None
    st = os.statvfs("/")
    assert d.root_free_bytes is not None
    assert abs(d.root_free_bytes - st.f_bavail * st.f_frsize) < 256 * 1024 * 1024
    # No GPU, no driver here.
    assert d.nvidia_module_version is None and d.nvswitch_devices == []
    assert not d.nvidia_smi.present and d.nvidia_smi.report is None
    assert d.pci_gpus == []
    assert set(d.services) == {
        "nvidia-persistenced", "nvidia-fabricmanager", "nvidia-dcgm", "containerd", "docker"
    }  # fmt: skip
    if shutil.which("systemctl"):  # `show` needs a running systemd, is-enabled does not
        for unit, state in d.services.items():
            live = subprocess.run(
                ["systemctl", "is-enabled", f"{unit}.service"], capture_output=True, text=True
            )
            assert state.enabled == (live.stdout.strip() or None), unit
    cuda = Path("/usr/local/cuda")
    assert d.cuda_link == (os.readlink(cuda) if cuda.is_symlink() else None)
    assert d.cuda_dirs == sorted(str(p) for p in Path("/usr/local").glob("cuda-*") if p.is_dir())


def test_nvidia_smi_xml_section(tmp_path, captures):
    xml = captures / "telegraf_a100-sxm4-80gb_4gpu_mig_535.54.03.xml"
    bindir = fake_tool(tmp_path, "nvidia-smi", f'cat "{xml}"\n')
    d = parse_host_state(run_script("dash", bindir))
    assert d.nvidia_smi.present and d.nvidia_smi.ok and d.nvidia_smi.rc == 0
    assert d.nvidia_smi.report.driver_version == "535.54.03"
    assert d.nvidia_smi.report.gpus[0].product_name == "NVIDIA A100-SXM4-80GB"


def test_version_mismatch_section(tmp_path):
    msg = (
        "Failed to initialize NVML: Driver/library version mismatch\nNVML library version: 580.95\n"
    )
    bindir = fake_tool(tmp_path, "nvidia-smi", f"printf '{msg}' >&2\nexit 18\n")
    d = parse_host_state(run_script("dash", bindir))
    assert d.nvidia_smi.present and not d.nvidia_smi.ok
    assert d.nvidia_smi.rc == 18 and d.nvidia_smi.version_mismatch
    assert d.nvidia_smi.error.startswith("Failed to initialize NVML")


def test_garbage_from_a_present_tool_is_recorded(tmp_path):
    bindir = fake_tool(tmp_path, "mokutil", "echo 'something unexpected'\n")
    fake_tool(tmp_path, "nvidia-smi", "echo '<html>not xml</html>'\n")
    d = parse_host_state(run_script("dash", bindir))
    assert d.secure_boot is None
    assert any("mokutil" in p for p in d.problems)
    assert not d.nvidia_smi.ok and "nvidia_smi_log" in d.nvidia_smi.error


def test_secure_boot_section(tmp_path):
    bindir = fake_tool(tmp_path, "mokutil", "echo 'SecureBoot enabled'\n")
    assert parse_host_state(run_script("dash", bindir)).secure_boot is True


def test_truncated_or_foreign_output():
    out = run_script("dash")
    with pytest.raises(ParseError, match="ends inside section"):
        split_sections(out[: out.index("@@gpuprov:end df")])
    with pytest.raises(ParseError, match="no os-release section"):
        parse_host_state("bash: line 1: syntax error\n")


def test_through_pyinfra_local_connector():
    from pyinfra.api import Config, Inventory, State
    from pyinfra.api.connect import connect_all, disconnect_all

    inventory = Inventory((["@local"], {}))
    state = State(inventory, Config())
    connect_all(state)
    try:
        host = inventory.get_host("@local")
        data = host.get_fact(HostState)
        smi = host.get_fact(NvidiaSmiXml)
    finally:
        disconnect_all(state)
    assert data.os == parse_os_release(Path("/etc/os-release").read_text())
    assert data.problems == [] and data.kernel == os.uname().release
    assert smi.present == (shutil.which("nvidia-smi") is not None)


@pytest.mark.skipif(shutil.which("apt-mark") is None, reason="no apt")
def test_holds_match_apt_mark():
    from gpuprov.parsers.system import parse_apt_mark_showhold

    live = subprocess.run(["apt-mark", "showhold"], capture_output=True, text=True, check=True)
    assert parse_host_state(run_script("dash")).held == parse_apt_mark_showhold(live.stdout)


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="not a dpkg system")
def test_packages_match_dpkg():
    d = parse_host_state(run_script("dash"))
    live = subprocess.run(
        [
            "dpkg-query",
            "-W",
            "-f=${Package}\\t${Version}\\t${Status}\\n",
            "dkms",
            "nvidia*",
            "cuda*",
        ],
        capture_output=True,
        text=True,
    ).stdout
    from gpuprov.parsers.system import parse_dpkg_query

    expected = parse_dpkg_query(live)
    assert {k: v for k, v in d.packages.items() if k in expected} == expected


SYSTEMCTL = Path(__file__).parents[2] / "fixtures" / "systemctl"


def test_services_from_one_systemctl_show(tmp_path):
    """A host running systemd answers the services section with one `systemctl show`
    (captured on the test bed's systemd VM: benchmarks/noop_breakdown.py --vm --capture);
    a unit's block is the one at its place in the order asked."""
    show = SYSTEMCTL / "show-ssh-absent-journald.txt"
    bindir = fake_tool(
        tmp_path,
        "systemctl",
        f'case "$1" in show) cat "{show}" ;; *) echo "unexpected: $*" >&2; exit 9 ;; esac\n',
    )
    d = parse_host_state(run_script("dash", bindir))
    assert d.problems == []
    # the capture asked ssh, a unit that does not exist, journald: the script's first three
    assert d.services["nvidia-persistenced"] == ServiceState("active", "enabled")
    assert d.services["nvidia-fabricmanager"] == ServiceState("inactive", None)
    assert d.services["nvidia-dcgm"] == ServiceState("active", "static")
    assert "containerd" not in d.services  # the capture has three blocks, not five


def test_services_none_installed(tmp_path):
    show = SYSTEMCTL / "show-gpu-units.txt"
    bindir = fake_tool(tmp_path, "systemctl", f'[ "$1" = show ] && exec cat "{show}"; exit 9\n')
    d = parse_host_state(run_script("dash", bindir))
    assert d.services == {
        u: ServiceState("inactive", None)
        for u in (
            "nvidia-persistenced",
            "nvidia-fabricmanager",
            "nvidia-dcgm",
            "containerd",
            "docker",
        )
    }


def test_services_per_unit_where_show_fails(tmp_path):
    """No systemd running (a chroot, a light host): `show` fails, is-active/is-enabled
    answer one unit at a time."""
    bindir = fake_tool(
        tmp_path,
        "systemctl",
        'case "$1" in show) echo "Failed to connect to bus" >&2; exit 1 ;;\n'
        "is-active) echo inactive; exit 3 ;;\n"
        'is-enabled) case "$2" in docker.service) echo masked ;; *) exit 1 ;; esac ;; esac\n',
    )
    d = parse_host_state(run_script("dash", bindir))
    assert d.services["docker"] == ServiceState("inactive", "masked")
    assert d.services["containerd"] == ServiceState("inactive", None)
    assert len(d.services) == 5


def _query_patterns(tool: str) -> list[str]:
    """The package globs the script's `dpkg-query -W` / `rpm -qa` asks for."""
    import re

    m = re.search(rf"{tool} [^\n]*?-f(?:=)?'[^']*'|{tool} [^\n]*?--qf '[^']*'", SCRIPT)
    assert m, f"no {tool} query in the script"
    rest = SCRIPT[m.end() : SCRIPT.index("2>/dev/null", m.end())]
    return re.findall(r"'([^']+)'", rest)


@pytest.mark.parametrize("os_id", tables.os_ids())
def test_every_runtime_package_is_in_the_package_query(os_id: str) -> None:
    """A package the deploys install but HostState does not ask for reads as absent, and
    every apply installs it again (podman did: the second apply was never a no-op)."""
    from fnmatch import fnmatchcase

    manager = tables.package_manager(os_id)
    patterns = _query_patterns("dpkg-query" if manager == "apt" else "rpm")
    names = {tables.packages_for(os_id, "580", "580.95.05", "open").container_toolkit}
    for runtime in ("docker", "containerd", "podman"):
        names.update(tables.runtime_packages(os_id, runtime))
        names.update(tables.runtime_extra_packages(os_id, runtime))
    unmatched = sorted(n for n in names if not any(fnmatchcase(n, p) for p in patterns))
    assert not unmatched, f"{os_id}: HostState does not read {unmatched} (patterns {patterns})"
