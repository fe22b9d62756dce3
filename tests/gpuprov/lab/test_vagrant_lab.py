"""LAB (marker vm): the Vagrant lab (mirror01 + gpu01) with the locally built box, under
libvirt + qemu software emulation, across the air gap as `make demo` crosses it: the GPU VM
cut off and the cut proven, a bundle built from Debian's archive + the stand-in repository,
exported onto a FAT32 image, verified, imported onto mirror01; dry run, apply (mirror
first), verify; then apt, an image pull and a model fetch from gpu01 through mirror01 only.
The VMs are destroyed and the firewall table removed at the end, even when a test fails."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpuprov.lab import repo_root
from gpuprov.lab.vagrant import LabSettings

pytestmark = [pytest.mark.vm, pytest.mark.slow, pytest.mark.timeout(3000)]

TIMES: dict[str, float] = {}


def gpuprov(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("gpuprov")
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> LabSettings:
    if os.geteuid() != 0:
        pytest.skip("the Vagrant lab needs root (libvirt system daemon)")
    subprocess.run(["bash", str(repo_root() / "scripts/install-lab-deps.sh")], check=True)
    base = tmp_path_factory.mktemp("vagrant-lab")
    s = LabSettings(
        gpus=1,
        memory=1024,
        net="192.168.57",  # beside a user's `make demo` lab on 192.168.56
        prefix=f"gpuprov-test-{os.getpid()}-",
        dir=base / "lab",
        dotfile=base / "dot-vagrant",
    )
    s.dir.mkdir()
    return s


@pytest.fixture(scope="module")
def lab(settings: LabSettings) -> LabSettings:
    """mirror01 + gpu01 up (box built/added first, cached across runs); destroyed, and the
    air-gap firewall table removed, on teardown."""
    from gpuprov.lab import airgap
    from gpuprov.lab.box import add_box, build_box
    from gpuprov.lab.demo import write_hardware
    from gpuprov.lab.vagrant import destroy, vagrant

    write_hardware(settings.dir / "hardware")
    start = time.monotonic()
    add_box(build_box())
    TIMES["box (build or reuse) + add"] = time.monotonic() - start
    log = settings.dir / "vagrant.log"
    try:
        start = time.monotonic()
        vagrant(settings, "up", "--provider", "libvirt", log=log, timeout=1800)
        TIMES["vagrant up mirror01 gpu01"] = time.monotonic() - start
        yield settings
    finally:
        airgap.uncut(settings)
        start = time.monotonic()
        leftovers = destroy(settings, log=log)
        TIMES["vagrant destroy -f"] = time.monotonic() - start
        print(f"\nlab times: {TIMES}; console: {settings.dir / 'console'}; log: {log}")
        if leftovers:
            print(f"removed stray domains: {leftovers}")


@pytest.fixture(scope="module")
def inventory(lab: LabSettings) -> Path:
    from gpuprov.lab.inventory import write_inventory

    start = time.monotonic()
    # cluster.mirror.keyring (lab/bundle.gpg, made here): verify judges mirror01's apt by it
    path, hosts = write_inventory(lab, lab.dir / "inventory.yaml")
    TIMES["inventory + keyscan"] = time.monotonic() - start
    assert [h.name for h in hosts] == ["mirror01", "gpu01"]
    return path


@pytest.fixture(scope="module")
def demo(lab: LabSettings, inventory: Path):
    """The demo's own steps, on the test's lab and inventory."""
    from gpuprov.lab.demo import Demo

    d = Demo(lab, out=lambda text: print(text, flush=True))
    d.inventory = inventory
    return d


def test_vagrantfile_defines_mirror_and_n_gpu_hosts(settings: LabSettings) -> None:
    from gpuprov.lab.vagrant import machine_states

    three = LabSettings(**{**settings.__dict__, "gpus": 3})
    states = machine_states(three)
    assert list(states) == ["mirror01", "gpu01", "gpu02", "gpu03"]
    assert set(states.values()) == {"not_created"}


def test_vm_has_its_name_profile_and_private_address(inventory: Path) -> None:
    from gpuprov.inventory.loader import load_inventory
    from gpuprov.lab.snapshot import ssh_command
    from gpuprov.testbed.standins import render_profile

    cluster = load_inventory(inventory)
    host = cluster.hosts["gpu01"]
    assert host.address == "192.168.57.11"
    assert host.profile == "hgx-h100-8"
    out = subprocess.run(
        [*ssh_command(host), "hostname; cat /etc/gpuprov-sim/profile.json; sudo -n id -u"],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    name, _, rest = out.stdout.partition("\n")
    assert name == "gpu01"
    profile_text, _, uid = rest.rpartition("}")
    assert json.loads(profile_text + "}") == render_profile("hgx-h100-8")
    assert uid.strip() == "0"


def test_host_keys_are_checked_strictly(inventory: Path, tmp_path: Path) -> None:
    from gpuprov.inventory.loader import load_inventory
    from gpuprov.lab.snapshot import ssh_command

    host = load_inventory(inventory).hosts["gpu01"]
    ok = subprocess.run([*ssh_command(host), "true"], capture_output=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    # The same connection against a known_hosts holding another key must be refused.
    wrong = tmp_path / "known_hosts"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", tmp_path / "k"], check=True
    )
    other = (tmp_path / "k.pub").read_text().split()[:2]
    wrong.write_text(f"{host.address} {' '.join(other)}\n")
    cmd = [a.replace(str(host.ssh.known_hosts), str(wrong)) for a in ssh_command(host)]
    bad = subprocess.run([*cmd, "true"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 255 and "Host key verification failed" in bad.stderr


def test_snapshot_sees_a_change(inventory: Path) -> None:
    """The no-change proof below is only worth something if a change shows."""
    from gpuprov.inventory.loader import load_inventory
    from gpuprov.lab.snapshot import ssh_command, take

    host = load_inventory(inventory).hosts["gpu01"]
    before = take(host)
    subprocess.run(
        [*ssh_command(host), "echo x | sudo tee /etc/gpuprov-lab-probe >/dev/null"],
        check=True, timeout=300,
    )  # fmt: skip
    try:
        diff = before.diff(take(host))
        assert any("/etc/gpuprov-lab-probe" in line for line in diff)
    finally:
        subprocess.run([*ssh_command(host), "sudo rm -f /etc/gpuprov-lab-probe"], timeout=300)
    assert before.diff(take(host)) == []


def test_gpu_host_reaches_only_the_mirror(demo) -> None:
    """The cut (isolated lab network, no default route, the control node's nftables
    table), proven from gpu01 against real listeners that mirror01 does reach."""
    from gpuprov.lab.demo import cut_and_prove

    start = time.monotonic()
    lines = cut_and_prove(demo, ["gpu01"])  # raises, naming each probe that failed
    TIMES["air gap: cut + proof"] = time.monotonic() - start
    text = "\n".join(lines)
    assert "gpu01: ok   no default route" in text
    assert "gpu01: ok   the control node's lab address is unreachable" in text
    assert "gpu01: ok   mirror01 is reachable" in text


def test_bundle_crosses_on_a_fat32_stick(demo) -> None:
    """bundle build (Debian archive + stand-in repo and registry on loopback) -> export onto
    a FAT32 image -> verify -> import onto mirror01, which then serves that bundle."""
    from gpuprov.lab.demo import build_lab_bundle

    start = time.monotonic()
    bundle = build_lab_bundle(demo)
    TIMES["bundle build"] = time.monotonic() - start
    start = time.monotonic()
    demo.carry(bundle)
    TIMES["stick: export + verify + import"] = time.monotonic() - start
    fs = subprocess.run(["file", "-b", demo.usb_image], capture_output=True, text=True)
    assert "FAT (32 bit)" in fs.stdout, fs.stdout
    current = demo.on_host("mirror01", "sudo -n readlink /srv/gpuprov/current")
    assert current.stdout.strip().endswith(f"/{bundle}"), current.stdout + current.stderr
    start = time.monotonic()
    demo.carry(bundle)  # again: the stick and the mirror hold it; nothing is copied
    TIMES["stick again (no-op)"] = time.monotonic() - start
    assert TIMES["stick again (no-op)"] < TIMES["stick: export + verify + import"]


def test_dry_run_changes_nothing(inventory: Path) -> None:
    from gpuprov.inventory.loader import load_inventory
    from gpuprov.lab.snapshot import take_all

    hosts = list(load_inventory(inventory).hosts.values())
    before = take_all(hosts)
    start = time.monotonic()
    plan = gpuprov("plan", str(inventory))
    assert plan.returncode == 0, plan.stdout + plan.stderr
    dry = gpuprov("apply", str(inventory), "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    TIMES["plan + apply --dry-run"] = time.monotonic() - start
    after = take_all(hosts)
    assert [line for h in hosts for line in before[h.name].diff(after[h.name])] == []


def test_apply_then_verify(inventory: Path) -> None:
    """mirror01 from the imported bundle first, then the GPU node deploy from mirror01,
    staged; converged; verify passes on both."""
    start = time.monotonic()
    applied = gpuprov("apply", str(inventory), "--yes", timeout=2400)
    TIMES["apply"] = time.monotonic() - start
    assert applied.returncode == 0, applied.stdout + applied.stderr
    again = gpuprov("plan", str(inventory))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Plan: 0 changes" in again.stdout + again.stderr  # converged: nothing to do
    verified = gpuprov("verify", str(inventory))
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_gpu_host_uses_the_mirror_only(demo) -> None:
    """From gpu01, air-gapped: apt-get update against its sources (all mirror01's), the
    bundle's image pulled by containerd's ctr from mirror01's registry, the model file
    fetched through HF_ENDPOINT."""
    from gpuprov.lab.demo import use_mirror
    from gpuprov.lab.inventory import APT_PORT, mirror_address

    start = time.monotonic()
    lines = use_mirror(demo, "gpu01")  # raises with the host's output on any failure
    TIMES["apt + image pull + model fetch"] = time.monotonic() - start
    sources = [ln.split()[-1] for ln in lines if ln.startswith("apt: source ")]
    assert sources and all(
        s.startswith(f"http://{mirror_address(demo.s)}:{APT_PORT}/") for s in sources
    ), lines
    assert any(ln.startswith("model: HF_ENDPOINT=http://") for ln in lines), lines


def verify_json(inventory: Path, *limit: str) -> tuple[int, dict[str, dict[str, dict]]]:
    """`gpuprov verify -o json`: (exit code, {host: {check name: check}})."""
    proc = gpuprov("verify", str(inventory), *limit, "-o", "json", timeout=900)
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"verify wrote no JSON (exit {proc.returncode}): "
                             f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}") from None  # fmt: skip
    hosts = {h["host"]: {c["name"]: c for c in h["checks"]} for h in doc.get("hosts", [])}
    return proc.returncode, hosts


def unit_pid(demo, unit: str) -> tuple[str, int]:
    """(ActiveState, MainPID) of a unit on mirror01. As root: the box has no D-Bus, and a
    user's systemctl reaches systemd only through it. Key=value lines: systemctl prints
    properties in its own order, not the order of the -p options."""
    out = demo.on_host(
        "mirror01", f"sudo -n systemctl show -p ActiveState -p MainPID {unit}", timeout=120
    )
    props = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    assert set(props) == {"ActiveState", "MainPID"}, out.stdout + out.stderr
    return props["ActiveState"], int(props["MainPID"])


def test_a_stopped_service_fails_verify_then_systemd_restarts_it(demo, inventory: Path) -> None:
    """The registry frozen (SIGSTOP: the unit stays "active", its port accepts and never
    answers, so nothing can race): verify names the registry as failing with the reason
    and judges apt and models on their own. Then SIGKILL: systemd restarts it (new PID)
    and verify passes again."""
    unit = "gpuprov-registry.service"
    state, pid = unit_pid(demo, unit)
    assert state == "active" and pid > 0
    start = time.monotonic()
    demo.on_host("mirror01", f"sudo -n systemctl kill -s STOP {unit}", timeout=120)
    try:
        code, hosts = verify_json(inventory, "-l", "mirror01")
        assert unit_pid(demo, unit) == ("active", pid)  # frozen, not restarted
        checks = hosts["mirror01"]
        assert code == 1 and not checks["registry"]["ok"], checks
        assert "192.168.57.10:5000/v2/: timed out" in checks["registry"]["detail"], checks
        assert checks["apt"]["ok"] and checks["models"]["ok"] and checks["bundle"]["ok"], checks
    finally:
        demo.on_host("mirror01", f"sudo -n systemctl kill -s KILL {unit}", timeout=120)
    deadline = time.monotonic() + 120
    while (now := unit_pid(demo, unit)) == ("active", pid) or now[0] != "active":
        assert time.monotonic() < deadline, f"no restart after SIGKILL: {now}"
        time.sleep(2)
    assert now[1] not in (0, pid)
    deadline = time.monotonic() + 120
    while (verified := verify_json(inventory, "-l", "mirror01"))[0] != 0:
        assert time.monotonic() < deadline, verified  # the restarted registry's first seconds
        time.sleep(5)
    TIMES["registry frozen, verify, killed, restarted, verify"] = time.monotonic() - start


@pytest.fixture(scope="module")
def upgrade(demo, inventory: Path) -> dict[str, str]:
    """The next bundle: the inventory moved to the next driver release, a differential
    bundle built against the first one, carried on the stick and imported onto mirror01."""
    from gpuprov.lab import airgap
    from gpuprov.lab.upgrade import build_next_bundle, inventory_driver, move_driver, next_driver

    first = airgap.bundle_id(demo.bundle)
    assert first is not None
    start = time.monotonic()
    new = next_driver(inventory_driver(inventory))
    assert new == "580.95.05"  # the lab started on 570.133.20, the catalog's oldest
    assert move_driver(inventory, new) == "570.133.20"
    bundle, directory = build_next_bundle(demo, new)
    TIMES["next bundle: build --since"] = time.monotonic() - start
    start = time.monotonic()
    demo.carry(bundle, directory)
    TIMES["next bundle: stick export + verify + import"] = time.monotonic() - start
    return {"first": first, "next": bundle, "dir": str(directory)}


def test_next_bundle_is_differential_and_import_checks_its_base(demo, upgrade, inventory) -> None:
    from gpuprov.lab.upgrade import manifest_base

    directory = Path(upgrade["dir"])
    assert manifest_base(directory) == upgrade["first"]
    manifest = json.loads((directory / "manifest.json").read_text())
    carried = {str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file()}
    listed = {f["path"] for f in manifest["files"]}
    assert carried - {"manifest.json", "manifest.json.asc"} < listed  # fewer: unchanged stay
    assert any("nvidia-driver-580-open" in p for p in carried), sorted(carried)[:40]
    assert not any("nvidia-driver-570-open" in p for p in listed)
    current = demo.on_host("mirror01", "sudo -n readlink /srv/gpuprov/current")
    previous = demo.on_host("mirror01", "sudo -n readlink /srv/gpuprov/previous")
    assert current.stdout.strip().endswith(f"/{upgrade['next']}"), current.stdout
    assert previous.stdout.strip().endswith(f"/{upgrade['first']}"), previous.stdout
    # The mirror serves the new bundle now: the same differential is on the wrong base.
    again = gpuprov("bundle", "import", str(directory), str(inventory),
                    "--keyring", str(demo.keyring))  # fmt: skip
    out = again.stdout + again.stderr
    assert again.returncode == 1, out
    assert f"differential on base {upgrade['first'][:12]}" in out, out
    assert f"serves {upgrade['next'][:12]}: import its base first" in out, out


def test_driver_upgrade_rolled_out_through_the_mirror(demo, upgrade, inventory: Path) -> None:
    """apply: mirror01 switches to the new bundle, then gpu01 (no route but mirror01)
    upgrades 570 -> 580; verify passes with driver and fabric manager at 580.95.05."""
    from gpuprov.lab.upgrade import served_release

    plan = gpuprov("plan", str(inventory))
    assert "NVIDIA driver 580.95.05" in plan.stdout + plan.stderr, plan.stdout + plan.stderr
    start = time.monotonic()
    applied = gpuprov("apply", str(inventory), "--yes", timeout=2400)
    TIMES["next bundle: apply (mirror switch + driver upgrade)"] = time.monotonic() - start
    assert applied.returncode == 0, applied.stdout[-4000:] + applied.stderr[-4000:]
    serving = demo.on_host("mirror01", "sudo -n cat /etc/gpuprov/mirror/serving").stdout.strip()
    assert serving == upgrade["next"]
    assert (
        served_release(demo)
        == (Path(upgrade["dir"]) / "apt/debian12/dists/gpuprov/InRelease").read_bytes()
    )
    code, hosts = verify_json(inventory)
    assert code == 0, hosts
    gpu = hosts["gpu01"]
    assert "580.95.05" in gpu["driver-version"]["detail"], gpu["driver-version"]
    assert "580.95.05" in gpu["fabricmanager-version"]["detail"], gpu["fabricmanager-version"]
    listed = demo.on_host(
        "gpu01", "dpkg-query -W -f='${Package} ${Version} ${db:Status-Status}\\n' 'nvidia-*'"
    ).stdout
    installed = [ln.rsplit(" ", 1)[0] for ln in listed.splitlines() if ln.endswith(" installed")]
    assert "nvidia-driver-580-open 580.95.05-1" in installed, listed
    assert "nvidia-fabricmanager 580.95.05-1" in installed, listed
    assert not [ln for ln in installed if "-570" in ln.split()[0]], listed


def test_rollback_switches_what_the_mirror_serves(demo, upgrade, inventory: Path) -> None:
    """`gpuprov bundle rollback` points current back at the first bundle; verify says the
    services still run the new one until apply switches them; after apply nginx serves
    the first bundle's InRelease again (byte for byte), and verify passes."""
    from gpuprov.lab.upgrade import served_release

    first_release = (demo.bundle / "apt/debian12/dists/gpuprov/InRelease").read_bytes()
    next_release = (Path(upgrade["dir"]) / "apt/debian12/dists/gpuprov/InRelease").read_bytes()
    assert first_release != next_release
    start = time.monotonic()
    rolled = gpuprov("bundle", "rollback", str(inventory))
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    current = demo.on_host("mirror01", "sudo -n readlink /srv/gpuprov/current")
    assert current.stdout.strip().endswith(f"/{upgrade['first']}"), current.stdout
    code, hosts = verify_json(inventory, "-l", "mirror01")
    assert code == 1 and hosts["mirror01"]["bundle"]["detail"] == (
        f"services run on bundle {upgrade['next'][:12]}, the imported one is "
        f"{upgrade['first'][:12]}: run `gpuprov apply` to switch them"
    ), hosts
    assert served_release(demo) == next_release  # not switched behind the clients' backs
    applied = gpuprov("apply", str(inventory), "-l", "mirror01", "--yes", timeout=1800)
    assert applied.returncode == 0, applied.stdout[-4000:] + applied.stderr[-4000:]
    assert served_release(demo) == first_release
    # No wait: the model registry's unit is Type=notify (READY=1 once it listens), so the
    # apply's restart returns with every service answering.
    verified = verify_json(inventory, "-l", "mirror01")
    assert verified[0] == 0, verified
    TIMES["rollback + mirror apply + verify"] = time.monotonic() - start


@pytest.fixture(scope="module", autouse=True)
def _no_stray_domains() -> None:
    yield
    if shutil.which("virsh"):
        listed = subprocess.run(
            ["virsh", "-c", "qemu:///system", "list", "--all", "--name"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert not [
            n for n in listed.stdout.split() if n.startswith(f"gpuprov-test-{os.getpid()}-")
        ]
