"""LAB: `make demo` — the README's main job on a Vagrant lab of simulated GPU hosts.

Each step says what it does and how long it took. Re-running reuses what exists (box,
repository, running VMs, converged hosts), so a second run takes minutes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from gpuprov.lab import repo_root
from gpuprov.lab.box import LabError, add_box, build_box, remove_box, require_testbed
from gpuprov.lab.inventory import REPO_PORT, REPO_SUITE
from gpuprov.lab.vagrant import LabSettings, destroy, machine_states, vagrant


class Demo:
    def __init__(self, settings: LabSettings, out: Callable[[str], None] | None = None) -> None:
        self.s = settings
        self.out = out or (lambda text: print(text, flush=True))
        self.repo_url: str | None = None
        self.times: list[tuple[str, float]] = []
        self.log = settings.dir / "demo.log"
        self.inventory = repo_root() / "inventories" / "vagrant.yaml"

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

    def repo(self) -> Path:
        with self.step("signed apt repository of stand-in NVIDIA packages"):
            repo = build_standin_repo(self.s.dir)
            self.out(f"    {repo}")
            return repo

    def up(self) -> None:
        with self.step(f"vagrant up: mirror01 + {self.s.gpus} GPU host(s) (log: {self.log})"):
            states = machine_states(self.s)
            if all(states.get(n) == "running" for n in self.s.machine_names()):
                self.out("    all running already")
            vagrant(self.s, "up", "--provider", self.s.provider, log=self.log, timeout=3600)

    def serve_repo(self, repo: Path) -> None:
        with self.step("serve the repository to the lab"):
            self.out(
                "    from the control node on the lab network (`gpuprov apply` does not yet "
                "install the mirror host's services on mirror01)"
            )
            self.repo_url = serve(
                repo, f"{self.s.net}.1", REPO_PORT, self.s.dir / "repo-server.pid"
            )
            self.out(f"    {self.repo_url}")

    def inventory_step(self) -> None:
        from gpuprov.lab.inventory import write_inventory

        with self.step("inventory from `vagrant ssh-config`, host keys by ssh-keyscan"):
            path, hosts = write_inventory(self.s, self.inventory)
            for h in hosts:
                self.out(f"    {h.name}: {h.lab_address} key {h.host_key[:30]}...")
            self.out(f"    wrote {path}")

    def reach_repo(self) -> None:
        """Every lab host fetches the signed Release file over the private network."""
        from gpuprov.inventory.loader import load_inventory
        from gpuprov.lab.snapshot import ssh_command

        if not self.repo_url:
            return
        url = f"{self.repo_url}dists/{REPO_SUITE}/InRelease"
        with self.step(f"lab hosts reach the repository ({url})"):
            for host in load_inventory(self.inventory).hosts.values():
                proc = subprocess.run(
                    [*ssh_command(host), f"curl -fsS -o /dev/null -w '%{{http_code}}' {url}"],
                    capture_output=True, text=True, timeout=300, check=False,
                )  # fmt: skip
                if proc.returncode != 0:
                    raise LabError(f"{host.name} cannot fetch {url}: {proc.stderr.strip()}")
                self.out(f"    {host.name}: HTTP {proc.stdout.strip()}")

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
        with self.step("staged apply: canary gpu01, then the rest"):
            self.gpuprov("rollout", "plan", inv, check=False)  # the waves, canary first
            self.out("    (`gpuprov apply` runs GPU hosts as a staged rollout: canary first)")
            self.gpuprov("apply", inv, "--yes")
        with self.step("verify"):
            self.gpuprov("verify", inv)

    def run(self) -> None:
        start = time.monotonic()
        self.install()
        self.hardware()
        self.box()
        repo = self.repo()
        self.up()
        self.serve_repo(repo)
        self.inventory_step()
        self.reach_repo()
        with self.step("facts"):
            self.gpuprov("facts", str(self.inventory), check=False)
        self.dry_run()
        self.apply()
        total = time.monotonic() - start
        self.out(f"\nDone in {total:.0f} s.")
        for title, took in self.times:
            self.out(f"  {took:7.1f} s  {title}")
        self.out(
            f"\nNext: gpuprov inventory show {self.inventory}\n"
            f"      vagrant ssh gpu01   (GPUPROV_LAB_BOX={self.s.box})\n"
            f"      logs: {self.log}, consoles: {self.s.dir}/console/\n"
            "      make demo-clean   (destroys the VMs, removes the box and the lab dir)"
        )


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
    debs = [d for d in build_standins(lab / "standin-debs") if not _is_sim(d)]
    debs += runtime_debs(lab / "runtime-debs")
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


def runtime_debs(dest: Path) -> list[Path]:
    """containerd and runc from this machine's Debian mirror: the lab hosts are air-gapped
    (no apt sources), so the lab repository carries them as a site mirror would."""
    dest.mkdir(parents=True, exist_ok=True)
    debs = sorted(dest.glob("*.deb"))
    if len(debs) < 2:
        subprocess.run(["apt-get", "download", "containerd", "runc"], cwd=dest, check=True,
                       capture_output=True)  # fmt: skip
        debs = sorted(dest.glob("*.deb"))
    return debs


def serve(directory: Path, address: str, port: int, pidfile: Path) -> str:
    """A static HTTP server for directory on address:port, left running (PID in pidfile)."""
    url = f"http://{address}:{port}/"
    if pidfile.is_file():
        with contextlib.suppress(ValueError, ProcessLookupError):
            os.kill(int(pidfile.read_text()), 0)
            return url
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", address, "--directory", str(directory),
         str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    pidfile.write_text(f"{proc.pid}\n")
    return url


def stop_server(pidfile: Path) -> None:
    if pidfile.is_file():
        with contextlib.suppress(ValueError, ProcessLookupError):
            os.kill(int(pidfile.read_text()), signal.SIGTERM)
        pidfile.unlink()


def clean(
    settings: LabSettings, out: Callable[[str], None] = print, inventory: Path | None = None
) -> None:
    """Destroy the VMs, stop the repo server, remove the box, the lab dir and the rollout
    state the demo's apply kept beside the lab inventory."""
    import shutil

    from gpuprov.rollout.state import default_state_path

    state = default_state_path(inventory or repo_root() / "inventories" / "vagrant.yaml")
    for path in (state, state.with_name(state.name + ".lock")):
        if path.exists():
            path.unlink()
            out(f"removed {path}")

    removed = destroy(settings)
    out(f"destroyed the lab VMs{' (and stray ' + ', '.join(removed) + ')' if removed else ''}")
    stop_server(settings.dir / "repo-server.pid")
    remove_box()
    out("removed box gpuprov/debian12-local")
    shutil.rmtree(settings.dir, ignore_errors=True)
    shutil.rmtree(settings.dotfile_dir, ignore_errors=True)
    out(f"removed {settings.dir} and {settings.dotfile_dir}")
