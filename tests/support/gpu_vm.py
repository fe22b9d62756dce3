"""TEST SUPPORT: one test-bed VM with simulated NVIDIA hardware, and the site repository
it installs from, as the end-to-end VM tests set them up (tests/deploys/test_gpu_node_vm.py,
Debian 12; tests/deploys/test_container_vm.py, Debian 13).

- `publish_site`: the stand-in NVIDIA packages (and whatever else the test's site carries)
  in an apt repository signed with a throwaway key; the simulator package kept apart, as
  the "hardware" the VM gets before gpuprov ever sees it.
- `simulated_gpu_vm`: the VM booted, both served to it over the lab bridge, the simulator
  installed with a GPU profile (lspci/mokutil shims, the boot-time module load).
- `gpuprov`, `as_json`, `set_group_vars`: the real CLI in a subprocess and the inventory
  edits between steps.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ruamel.yaml import YAML

if TYPE_CHECKING:
    from gpuprov.testbed.vms import VM, VMLab

REPO_ROOT = Path(__file__).resolve().parents[2]
SIM_PACKAGE = "gpuprov-gpu-sim_"  # the simulator's .deb: hardware, not site content


def gpuprov(*args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    """The `gpuprov` CLI of this checkout; with `check`, a failure shows its output."""
    proc = subprocess.run(
        [sys.executable, "-m", "gpuprov.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"gpuprov {' '.join(args)} exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout[-6000:]}\nstderr:\n{proc.stderr[-6000:]}"
        )
    return proc


def as_json(proc: subprocess.CompletedProcess) -> dict:
    return json.loads(proc.stdout)


def set_group_vars(inventory: Path, values: dict[str, Any], group: str = "gpu") -> None:
    """Merge `values` into the `vars:` of `group` in the inventory file."""
    yaml = YAML()
    doc = yaml.load(inventory.read_text())
    doc["groups"][group].setdefault("vars", {}).update(values)
    with inventory.open("w") as fh:
        yaml.dump(doc, fh)


def publish_site(work: Path, standins: list[Path], extra: list[Path]) -> dict[str, Path]:
    """`standins` (build_standins' packages) but the simulator, and `extra`, published as
    suite `gpuprov` under work/repo, signed; the simulator alone as
    work/hardware/gpuprov-gpu-sim.deb. Returns repo, keyring (what apt trusts), hardware,
    work."""
    from gpuprov.aptrepo import generate_key, publish_repo

    sim = [d for d in standins if d.name.startswith(SIM_PACKAGE)]
    key = generate_key(work / "gnupg", "gpuprov test site", "site@gpuprov.test")
    repo = work / "repo"
    publish_repo([d for d in standins if d not in sim] + extra, repo, suite="gpuprov", key=key)
    hardware = work / "hardware"
    hardware.mkdir()
    shutil.copy(sim[0], hardware / "gpuprov-gpu-sim.deb")
    keyring = key.export_public(work / "site.gpg")
    return {"repo": repo, "keyring": keyring, "hardware": hardware, "work": work}


@dataclass
class GpuVM:
    lab: VMLab
    vm: VM
    run: Callable[..., str]  # run(cmd, timeout=600) as root on the VM; asserts it succeeded
    repo_url: str  # the site repository, as the VM reaches it


@contextmanager
def simulated_gpu_vm(site: dict[str, Path], profile: str, **vm_options: Any) -> Iterator[GpuVM]:
    """One VM named gpu001 (VMLab's `vm_options`: memory_mb, suite, boot_timeout...) that
    looks like a `profile` GPU system, with the site repository served to it."""
    from gpuprov.testbed.standins import install_sim_profile, render_profile
    from gpuprov.testbed.vms import VMLab

    with VMLab(1, names=["gpu001"], **vm_options) as lab:
        vm = lab.vms[0]
        repo_url = lab.serve_http(site["repo"])
        hw_url = lab.serve_http(site["hardware"])

        def run(cmd: str, timeout: float = 600) -> str:
            out = vm.ssh(cmd, timeout=timeout)
            assert out.returncode == 0, f"{cmd}: {out.stdout}{out.stderr}"
            return out.stdout

        run(f"curl -fsS -o /tmp/sim.deb {hw_url}gpuprov-gpu-sim.deb && dpkg -i /tmp/sim.deb")
        install_sim_profile(run, render_profile(profile))
        yield GpuVM(lab, vm, run, repo_url)
