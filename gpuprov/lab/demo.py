"""LAB: `make demo` — the README's main job on a Vagrant lab of simulated GPU hosts, across
a real air gap: bundle build -> FAT32 stick -> verify -> import onto mirror01 -> apply
(mirror first, then staged GPU waves) -> verify -> apt, an image pull and a model fetch
on a GPU host whose only route is mirror01 (gpuprov.lab.airgap).

Each step says what it does and how long it took. Re-running reuses what exists (box,
bundle, stick, imported bundle, running VMs, converged hosts), so a second run is fast.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from gpuprov.lab import airgap, repo_root
from gpuprov.lab.box import LabError, add_box, build_box, remove_box, require_testbed
from gpuprov.lab.inventory import REPO_SUITE
from gpuprov.lab.vagrant import LabSettings, destroy, machine_states, vagrant


class Demo:
    def __init__(self, settings: LabSettings, out: Callable[[str], None] | None = None) -> None:
        self.s = settings
        self.out = out or (lambda text: print(text, flush=True))
        self.times: list[tuple[str, float]] = []
        self.log = settings.dir / "demo.log"
        self.inventory = repo_root() / "inventories" / "vagrant.yaml"
        self.bundle = settings.dir / "bundle"
        self.usb_image = settings.dir / "usb.img"
        self.usb = settings.dir / "usb"
        self.keyring = settings.dir / "bundle.gpg"
        # What `vagrant` said earlier in this run (each call is seconds of Ruby and libvirt):
        # the VMs' states (up -> inventory) and each VM's ssh-config HostName (inventory ->
        # air gap). Nothing changes them between those steps.
        self.states: dict[str, str] | None = None
        self.ssh_hosts: dict[str, str] | None = None

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[None]:
        self.out(f"==> {title}")
        start = time.monotonic()
        yield
        took = time.monotonic() - start
        self.times.append((title, took))
        self.out(f"    ({took:.1f} s)")

    # --- gpuprov's own CLI, as a user would run it ---------------------------------
    def gpuprov(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        exe = Path(sys.executable).with_name("gpuprov")
        cmd = [str(exe) if exe.exists() else "gpuprov", *args]
        self.out(f"    $ gpuprov {' '.join(args)}")
        env = {**os.environ, "COLUMNS": os.environ.get("COLUMNS", "150")}  # tables, unwrapped
        # Streamed line by line: a staged apply of software-emulated VMs takes minutes.
        lines: list[str] = []
        with subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        ) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                self.out(f"      {line.rstrip()}")
        if check and proc.returncode != 0:
            raise LabError(f"`gpuprov {' '.join(args)}` failed (exit {proc.returncode})")
        return subprocess.CompletedProcess(cmd, proc.returncode, "".join(lines), "")

    def on_host(
        self, name: str, script: str, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """Run a shell script on a lab host over SSH (the inventory's strict settings)."""
        from gpuprov.inventory.loader import load_inventory
        from gpuprov.lab.snapshot import ssh_command

        host = load_inventory(self.inventory).hosts[name]
        try:
            return subprocess.run([*ssh_command(host), "bash -s"], input=script,
                                  capture_output=True, text=True, timeout=timeout, check=False)  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise LabError(f"{name}: no answer over SSH after {timeout:.0f} s") from exc

    def gpu_names(self) -> list[str]:
        return [n for n in self.s.machine_names() if n.startswith("gpu")]

    # --- steps -----------------------------------------------------------------------
    def install(self) -> None:
        with self.step("system packages: vagrant, vagrant-libvirt, libvirt (+ daemons running)"):
            subprocess.run(
                ["bash", str(repo_root() / "scripts" / "install-lab-deps.sh")], check=True
            )

    def hardware(self) -> None:
        with self.step(f"simulated GPU hardware ({self.s.profile}) -> {self.s.dir}/hardware"):
            write_hardware(self.s.dir / "hardware")

    def box(self) -> None:
        with self.step("box gpuprov/debian12-local from the test bed's Debian 12 rootfs"):
            box = build_box()
            self.out(f"    {'built' if box.built else 'reused'} {box.file}")
            self.out(f"    {'added to' if add_box(box) else 'already in'} vagrant box list")

    def up(self) -> None:
        with self.step(f"vagrant up: mirror01 + {self.s.gpus} GPU host(s) (log: {self.log})"):
            states = self.states = machine_states(self.s)
            if all(states.get(n) == "running" for n in self.s.machine_names()):
                # `vagrant up` of running machines only says so (provisioners run on the
                # first up alone), after seconds of Ruby and libvirt calls.
                self.out("    all running already")
                return
            self.states = None  # `up` changed them
            vagrant(self.s, "up", "--provider", self.s.provider, log=self.log, timeout=3600)

    def inventory_step(self) -> None:
        from gpuprov.lab.inventory import write_inventory

        with self.step("inventory from `vagrant ssh-config`, host keys by ssh-keyscan"):
            airgap.bundle_key(self.s.dir)  # the mirror's keyring, for `gpuprov verify`
            path, hosts = write_inventory(self.s, self.inventory, states=self.states)
            self.ssh_hosts = {h.name: h.ssh_address for h in hosts}
            for h in hosts:
                self.out(f"    {h.name}: {h.lab_address} key {h.host_key[:30]}...")
            self.out(f"    wrote {path}")

    def airgap(self) -> None:
        with self.step("air gap: the GPU hosts reach mirror01 and nothing else"):
            for line in cut_and_prove(self, self.gpu_names()):
                self.out(f"    {line}")

    def build_bundle(self) -> str:
        with self.step("connected side: gpuprov bundle build (Debian archive + stand-in repo)"):
            return build_lab_bundle(self)

    def carry(self, bundle: str, directory: Path | None = None) -> None:
        """Export onto the stick, then (far side) verify it and import it onto mirror01.
        `directory`: the bundle's directory (default the lab's first bundle, lab/bundle)."""
        directory = directory or self.bundle
        with self.step(f"USB stick: FAT32 image {self.usb_image}"):
            made = airgap.usb_image(self.usb_image, airgap.tree_size(directory))
            self.out(f"    {'formatted (mkfs.vfat -F 32)' if made else 'kept'} {self.usb_image}")
        with airgap.mounted(self.usb_image, self.usb) as driver:
            self.out(f"    mounted at {self.usb} by {driver}")
            with self.step("connected side: gpuprov bundle export onto the stick"):
                on_stick = airgap.bundle_id(self.usb)
                if on_stick == bundle:
                    self.out(f"    the stick holds bundle {bundle[:12]} already: verify decides")
                else:
                    if on_stick is not None:  # a whole other bundle: a fresh stick for this one
                        _empty(self.usb)
                    # A half export of this bundle (interrupted run) resumes: good chunks stay.
                    export = ("bundle", "export", str(directory), "--to", str(self.usb),
                              "--chunk-size", str(CHUNK))  # fmt: skip
                    first = self.gpuprov(*export, check=False)
                    if first.returncode != 0:
                        if not any(self.usb.iterdir()):
                            raise LabError(
                                f"`gpuprov bundle export` failed (exit {first.returncode})"
                            )
                        self.out("    the stick held something else (half an export?): emptied")
                        _empty(self.usb)
                        self.gpuprov(*export)
            with self.step("far side: gpuprov bundle verify the stick"):
                self.gpuprov("bundle", "verify", str(self.usb), "--keyring", str(self.keyring))
            with self.step("far side: gpuprov bundle import onto mirror01"):
                serving = self.on_host("mirror01", "sudo -n readlink /srv/gpuprov/current || true")
                if serving.stdout.strip().rstrip("/").endswith(f"/{bundle}"):
                    self.out(f"    mirror01 serves bundle {bundle[:12]} already: nothing to import")
                else:
                    self.gpuprov("bundle", "import", str(self.usb), str(self.inventory),
                                 "--keyring", str(self.keyring))  # fmt: skip

    def dry_run(self) -> None:
        from gpuprov.inventory.loader import load_inventory
        from gpuprov.lab.snapshot import take_all

        inv = str(self.inventory)
        with self.step("dry run (plan, apply --dry-run) changes nothing"):
            hosts = list(load_inventory(self.inventory).hosts.values())
            before = take_all(hosts)
            self.gpuprov("plan", inv, check=False)
            self.gpuprov("apply", inv, "--dry-run", check=False)
            after = take_all(hosts)
            diffs = [d for h in hosts for d in before[h.name].diff(after[h.name])]
            if diffs:
                raise LabError("the dry run changed hosts:\n" + "\n".join(diffs[:40]))
            self.out(f"    packages, /etc and service states identical on {len(hosts)} host(s)")

    def apply(self) -> None:
        inv = str(self.inventory)
        with self.step("apply: mirror01 first, then the GPU hosts staged (canary gpu01)"):
            self.gpuprov("rollout", "plan", inv, check=False)  # the waves, canary first
            self.gpuprov("apply", inv, "--yes")
        with self.step("verify"):
            self.gpuprov("verify", inv)

    def use(self) -> None:
        with self.step("from gpu01: apt, an image pull and a model fetch, all from mirror01"):
            for line in use_mirror(self, "gpu01"):
                self.out(f"    {line}")

    def run(self) -> None:
        start = time.monotonic()
        self.install()
        self.hardware()
        self.box()
        self.up()
        self.inventory_step()
        self.airgap()
        bundle = self.build_bundle()
        self.carry(bundle)
        with self.step("facts"):
            self.gpuprov("facts", str(self.inventory), check=False)
        self.dry_run()
        self.apply()
        self.use()
        total = time.monotonic() - start
        self.out(f"\nDone in {total:.0f} s.")
        for title, took in self.times:
            self.out(f"  {took:7.1f} s  {title}")
        self.out(
            f"\nNext: gpuprov inventory show {self.inventory}\n"
            f"      vagrant ssh gpu01   (GPUPROV_LAB_BOX={self.s.box})\n"
            f"      logs: {self.log}, consoles: {self.s.dir}/console/\n"
            "      make demo-clean   (destroys the VMs, removes the box, the lab dir and the "
            "air-gap firewall table)"
        )


CHUNK = 8 * 2**20  # small chunks on the lab's stick: the bundle's larger files are split


def _empty(directory: Path) -> None:
    """Empty a stick that holds another bundle (or a half export of one)."""
    import shutil

    for child in directory.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def build_lab_bundle(demo: Demo) -> str:
    """`gpuprov bundle build` of the lab, reused when its inputs are unchanged and its apt
    repository is not about to expire; returns the bundle id."""
    import shutil

    from gpuprov.lab.inventory import write_bundle_inventory
    from gpuprov.testbed.rootfs import cache_dir

    lab = demo.s.dir
    home = airgap.bundle_key(lab)
    airgap.host_dpkg_status(lab)
    airgap.lab_model(lab)
    airgap.lab_image(lab)
    repo = build_standin_repo(lab)
    inventory = write_bundle_inventory(demo.s)
    stamp = lab / "bundle.inputs"
    inputs = airgap.build_inputs(inventory, repo, lab)
    have = airgap.bundle_id(demo.bundle)
    releases = list((demo.bundle / "apt").glob("*/dists/*/Release"))
    if (
        have
        and stamp.is_file()
        and stamp.read_text() == inputs
        and releases
        and not any(_expires_soon(r) for r in releases)
    ):
        demo.out(f"    reused bundle {have[:12]} ({demo.bundle}: same inputs)")
        return have
    shutil.rmtree(demo.bundle, ignore_errors=True)
    stamp.unlink(missing_ok=True)
    with airgap.upstreams(demo.s, repo):
        demo.gpuprov("bundle", "build", str(inventory), "--to", str(demo.bundle),
                     "--key-home", str(home), "--cache", str(cache_dir() / "bundle"))  # fmt: skip
    built = airgap.bundle_id(demo.bundle)
    if built is None:
        raise LabError(f"{demo.bundle}: the build wrote no manifest")
    stamp.write_text(inputs)
    demo.out(f"    bundle {built[:12]}: {airgap.tree_size(demo.bundle) / 2**20:.1f} MiB")
    return built


def cut_and_prove(demo: Demo, gpus: list[str]) -> list[str]:
    """Close the control node to the GPU VMs (nftables), then prove from each GPU VM that
    only mirror01 is reachable, against real listeners that mirror01 does reach."""
    from gpuprov.inventory.loader import load_inventory
    from gpuprov.lab.inventory import mirror_address

    cluster = load_inventory(demo.inventory)
    mgmt = airgap.management_addresses(demo.s, gpus, demo.ssh_hosts)
    lab_addrs = [cluster.hosts[n].address for n in gpus]
    airgap.cut(demo.s, lab_addrs + mgmt, [mirror_address(demo.s)])
    lines = [f"nftables table inet {airgap.table_name(demo.s)} on this machine drops "
             f"{', '.join(lab_addrs + mgmt)} (except replies and DHCP)"]  # fmt: skip
    control_lab = airgap.gateway_of(lab_addrs[0])
    control_mgmt = airgap.gateway_of(mgmt[0])
    with airgap.listener(control_lab) as lab_url, airgap.listener(control_mgmt) as mgmt_url:
        control = demo.on_host(
            "mirror01", f"curl -fsS -m 10 -o /dev/null {lab_url} && echo reached", timeout=120
        )
        if "reached" not in control.stdout:
            raise LabError(f"mirror01 cannot reach {lab_url} either: the proof would prove "
                           f"nothing ({control.stderr.strip()})")  # fmt: skip
        lines.append(f"mirror01 (not cut) reaches the control node's listener {lab_url}")
        script = airgap.probe_script(mirror_address(demo.s), lab_url, mgmt_url)
        failed = []
        # Every GPU host at once: the proof is timeouts, the same wait on each host.
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            runs = list(pool.map(lambda n: demo.on_host(n, script, timeout=300), gpus))
        for name, proc in zip(gpus, runs, strict=True):
            for probe in airgap.parse_probes(proc.stdout):
                mark = "ok  " if probe.ok else "FAIL"
                lines.append(f"{name}: {mark} {probe.what} ({probe.detail})")
                if not probe.ok:
                    failed.append(f"{name}: {probe.what}")
    if failed:
        raise LabError("the air gap is not what it should be: " + "; ".join(failed))
    return lines


def use_mirror(demo: Demo, name: str) -> list[str]:
    """From a GPU VM: apt-get update against the site sources only, pull the bundle's image
    with containerd's ctr from mirror01's registry, fetch the model file via HF_ENDPOINT."""
    from gpuprov.lab.inventory import REGISTRY_PORT, mirror_address

    registry = f"{mirror_address(demo.s)}:{REGISTRY_PORT}"
    repo, tag = airgap.IMAGE.rsplit(":", 1)
    lines = []
    apt = demo.on_host(name, airgap.APT_SCRIPT, timeout=600)
    if apt.returncode != 0:
        raise LabError(f"{name}: apt-get update from the site sources failed: "
                       f"{(apt.stdout + apt.stderr).strip()[-1500:]}")  # fmt: skip
    lines += [f"apt: {line}" for line in apt.stdout.splitlines()[:30]]
    pull = demo.on_host(name, airgap.pull_script(registry, repo, tag), timeout=600)
    if pull.returncode != 0:
        raise LabError(f"{name}: ctr could not pull {repo}:{tag} from {registry}: "
                       f"{(pull.stdout + pull.stderr).strip()[-1500:]}")  # fmt: skip
    lines += [f"image: {line}" for line in pull.stdout.splitlines()[-3:]]
    fetch = demo.on_host(name, airgap.model_script(), timeout=300)
    if fetch.returncode != 0 or airgap.MODEL_CONFIG.strip() not in fetch.stdout:
        raise LabError(f"{name}: the model file did not come through HF_ENDPOINT: "
                       f"{(fetch.stdout + fetch.stderr).strip()[-1500:]}")  # fmt: skip
    lines += [f"model: {line}" for line in fetch.stdout.splitlines()[-2:]]
    return lines


def write_hardware(out: Path) -> list[Path]:
    """Every stand-in GPU profile as JSON and the gpuprov-gpu-sim package: the simulated
    hardware the Vagrantfile's provisioner puts on each GPU host (as on a real machine,
    the GPUs are there before gpuprov provisions anything)."""
    require_testbed()
    from gpuprov.testbed.standins import build_standins
    from gpuprov.testbed.standins.profiles import PROFILES, render_profile
    from gpuprov.testbed.standins.sim import profile_json

    out.mkdir(parents=True, exist_ok=True)
    files = {f"{name}.json": profile_json(render_profile(name)).encode() for name in PROFILES}
    sim = [d for d in build_standins(out.parent / "standin-debs") if _is_sim(d)]
    files["gpuprov-gpu-sim.deb"] = sim[0].read_bytes()
    paths = []
    for name, data in sorted(files.items()):
        path = out / name
        if not path.is_file() or path.read_bytes() != data:
            tmp = path.with_name(f".{name}.tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        paths.append(path)
    return paths


def _is_sim(deb: Path) -> bool:
    return deb.name.startswith("gpuprov-gpu-sim_")


def build_standin_repo(lab: Path) -> Path:
    """Stand-in .debs published as a signed repo at lab/repo (keyring: lab/repo-keyring.gpg)."""
    from gpuprov.aptrepo import generate_key, load_key, publish_repo

    require_testbed()
    from gpuprov.testbed.standins import build_standins

    # The simulator is "hardware" (write_hardware), not something the site's mirror offers.
    # containerd and the rest come from Debian's archive, through the bundle's closure.
    debs = [d for d in build_standins(lab / "standin-debs") if not _is_sim(d)]
    home = lab / "repo-key"
    key = (
        load_key(home)
        if home.is_dir()
        else generate_key(home, "gpuprov lab", "lab@gpuprov.invalid")
    )
    repo = lab / "repo"
    stamp = lab / "repo.inputs"
    inputs = json.dumps(sorted(p.name for p in debs))
    if (
        not (repo / "dists").is_dir()
        or not stamp.is_file()
        or stamp.read_text() != inputs
        or _expires_soon(repo / "dists" / REPO_SUITE / "Release")
    ):
        publish_repo(debs, repo, suite=REPO_SUITE, key=key)
        stamp.write_text(inputs)
    key.export_public(lab / "repo-keyring.gpg")
    return repo


def _expires_soon(release: Path) -> bool:
    """True when the kept lab repository's Valid-Until is less than a week away (or
    unreadable): publish again, as a site does with each bundle."""
    from datetime import UTC, datetime, timedelta
    from email.utils import parsedate_to_datetime

    for line in release.read_text().splitlines() if release.is_file() else ():
        if line.startswith("Valid-Until:"):
            try:
                until = parsedate_to_datetime(line.split(":", 1)[1].strip())
            except (TypeError, ValueError):
                return True
            return until - datetime.now(UTC) < timedelta(days=7)
    return not release.is_file()


def clean(
    settings: LabSettings, out: Callable[[str], None] = print, inventory: Path | None = None
) -> None:
    """Destroy the VMs, drop the air-gap firewall table, unmount the stick, remove the box,
    the lab dir (bundle, keys, stick image) and the rollout state the demo's apply kept
    beside the lab inventory."""
    import shutil

    from gpuprov.rollout.state import default_state_path

    state = default_state_path(inventory or repo_root() / "inventories" / "vagrant.yaml")
    for path in (state, state.with_name(state.name + ".lock")):
        if path.exists():
            path.unlink()
            out(f"removed {path}")

    removed = destroy(settings)
    out(f"destroyed the lab VMs{' (and stray ' + ', '.join(removed) + ')' if removed else ''}")
    if airgap.uncut(settings):
        out(f"removed nftables table inet {airgap.table_name(settings)}")
    usb = settings.dir / "usb"
    if usb.is_dir() and airgap._is_mountpoint(usb):
        airgap._unmount(usb)
        out(f"unmounted {usb}")
    remove_box()
    out("removed box gpuprov/debian12-local")
    shutil.rmtree(settings.dir, ignore_errors=True)
    shutil.rmtree(settings.dotfile_dir, ignore_errors=True)
    out(f"removed {settings.dir} and {settings.dotfile_dir}")
