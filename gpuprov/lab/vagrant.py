"""LAB: drive the top-level Vagrantfile and learn how to reach its VMs.

Settings travel to Vagrant as the GPUPROV_LAB_* environment the Vagrantfile reads, so one
`LabSettings` describes a lab for `vagrant`, the inventory writer and the tests alike
(tests use their own dotfile dir, domain prefix and network, beside a user's lab).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import re
import shlex
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from gpuprov.lab import LOCAL_BOX, lab_dir, repo_root
from gpuprov.lab.box import LabError


@dataclass
class LabSettings:
    gpus: int = 2
    memory: int = 1024
    cpus: int = 1
    profile: str = "hgx-h100-8"
    box: str = LOCAL_BOX
    net: str = "192.168.56"
    prefix: str = "gpuprov-lab-"
    dir: Path = field(default_factory=lab_dir)  # hardware, console logs, known_hosts
    dotfile: Path | None = None  # VAGRANT_DOTFILE_PATH; None: <repo>/.vagrant
    vagrantfile_dir: Path = field(default_factory=repo_root)

    @classmethod
    def from_env(cls, **overrides: object) -> LabSettings:
        env = os.environ
        s = cls(
            gpus=int(env.get("GPUPROV_LAB_GPUS", "2")),
            memory=int(env.get("GPUPROV_LAB_MEMORY", "1024")),
            cpus=int(env.get("GPUPROV_LAB_CPUS", "1")),
            profile=env.get("GPUPROV_LAB_PROFILE", "hgx-h100-8"),
            box=env.get("GPUPROV_LAB_BOX", LOCAL_BOX),
            net=env.get("GPUPROV_LAB_NET", "192.168.56"),
            prefix=env.get("GPUPROV_LAB_PREFIX", "gpuprov-lab-"),
        )
        for key, value in overrides.items():
            setattr(s, key, value)
        return s

    @property
    def provider(self) -> str:
        return os.environ.get("VAGRANT_DEFAULT_PROVIDER", "libvirt")

    @property
    def dotfile_dir(self) -> Path:
        return self.dotfile or self.vagrantfile_dir / ".vagrant"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            VAGRANT_CWD=str(self.vagrantfile_dir),
            VAGRANT_DEFAULT_PROVIDER=self.provider,
            GPUPROV_LAB_GPUS=str(self.gpus),
            GPUPROV_LAB_MEMORY=str(self.memory),
            GPUPROV_LAB_CPUS=str(self.cpus),
            GPUPROV_LAB_PROFILE=self.profile,
            GPUPROV_LAB_BOX=self.box,
            GPUPROV_LAB_NET=self.net,
            GPUPROV_LAB_PREFIX=self.prefix,
            GPUPROV_LAB_DIR=str(self.dir),
            # Vagrant's update and plugin checks would try the network on every call.
            VAGRANT_CHECKPOINT_DISABLE="1",
            VAGRANT_BOX_UPDATE_CHECK_DISABLE="1",
        )
        if self.dotfile:
            env["VAGRANT_DOTFILE_PATH"] = str(self.dotfile)
        return env

    def machine_names(self) -> list[str]:
        return ["mirror01", *(f"gpu{i:02d}" for i in range(1, self.gpus + 1))]


def vagrant(
    settings: LabSettings, *args: str, log: Path | None = None, timeout: float = 1800
) -> subprocess.CompletedProcess[str]:
    """Run `vagrant ARGS` for this lab; output appended to `log` when given. Raises on failure."""
    cmd = ["vagrant", *args]
    try:
        if log:
            with open(log, "a") as fh:
                fh.write(f"$ {shlex.join(cmd)}\n")
                fh.flush()
                proc = subprocess.run(
                    cmd, env=settings.env(), stdout=fh, stderr=subprocess.STDOUT,
                    text=True, timeout=timeout, check=False,
                )  # fmt: skip
        else:
            proc = subprocess.run(
                cmd, env=settings.env(), capture_output=True, text=True, timeout=timeout,
                check=False,
            )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"`{shlex.join(cmd)}` took more than {timeout:.0f} s") from exc
    if proc.returncode != 0:
        where = f"see {log}" if log else (proc.stderr or proc.stdout).strip()[-2000:]
        raise LabError(f"`{shlex.join(cmd)}` failed (exit {proc.returncode}): {where}")
    return proc


def machine_states(settings: LabSettings) -> dict[str, str]:
    """name -> state (running, shutoff, not_created, ...) from `vagrant status`."""
    out = vagrant(settings, "status", "--machine-readable", timeout=300).stdout
    states: dict[str, str] = {}
    for line in out.splitlines():
        parts = line.split(",")
        if len(parts) >= 4 and parts[2] == "state":
            states[parts[1]] = parts[3]
    return states


def ssh_config(settings: LabSettings, names: list[str]) -> dict[str, dict[str, str]]:
    """Parse `vagrant ssh-config NAMES`: host -> {hostname, port, user, identityfile, ...}."""
    out = vagrant(settings, "ssh-config", *names, timeout=300).stdout
    return parse_ssh_config(out)


def parse_ssh_config(text: str) -> dict[str, dict[str, str]]:
    hosts: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        key, value = key.lower(), value.strip().strip('"')
        if key == "host":
            current = hosts.setdefault(value, {})
        elif current is not None and key not in current:
            current[key] = value
    return hosts


@dataclass
class LabHost:
    name: str
    ssh_address: str  # what `vagrant ssh` uses (management network / forwarded port)
    ssh_port: int
    user: str
    key: Path
    lab_address: str  # on the lab's private network (the inventory address)
    host_key: str  # "ssh-ed25519 AAAA..." read over Vagrant's authenticated session
    sim_profile: str | None

    @property
    def role(self) -> str:
        return "mirror" if self.name.startswith("mirror") else "gpu"


# One round trip per VM: its private address, its host key and its simulated profile.
_PROBE = (
    "ip -4 -o addr show | awk '{print \"addr\", $4}'; "
    "printf 'hostkey %s\\n' \"$(cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub)\"; "
    'sed -n \'s/.*"profile": *"\\([^"]*\\)".*/profile \\1/p\' '
    "/etc/gpuprov-sim/profile.json 2>/dev/null; true"
)


def _vagrant_ssh_opts(cfg: dict[str, str]) -> list[str]:
    # Vagrant's own trust (it created the VM and its key); only to read what we record.
    return [
        "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
        "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=30",
        "-i", cfg["identityfile"], "-p", cfg.get("port", "22"),
        f"{cfg.get('user', 'vagrant')}@{cfg['hostname']}",
    ]  # fmt: skip


def probe(name: str, cfg: dict[str, str], net: str) -> LabHost:
    proc = subprocess.run(
        ["ssh", *_vagrant_ssh_opts(cfg), _PROBE],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise LabError(f"{name}: probe over `vagrant ssh-config` failed: {proc.stderr.strip()}")
    found: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition(" ")
        # The private address is the one in the lab's /24 (interface names vary by box).
        if key == "addr" and not value.startswith(f"{net}."):
            continue
        found.setdefault(key, value.strip())
    if "addr" not in found or not found.get("hostkey", "").startswith("ssh-ed25519 "):
        raise LabError(
            f"{name}: no address in {net}.0/24 or no host key in probe output {proc.stdout!r}"
        )
    return LabHost(
        name=name,
        ssh_address=cfg["hostname"],
        ssh_port=int(cfg.get("port", "22")),
        user=cfg.get("user", "vagrant"),
        key=Path(cfg["identityfile"]),
        lab_address=found["addr"].split("/")[0],
        host_key=found["hostkey"],
        sim_profile=found.get("profile"),
    )


def keyscan(address: str, port: int = 22, *, attempts: int = 5) -> str:
    """The ed25519 host key sshd presents at address:port ("ssh-ed25519 AAAA...")."""
    last = ""
    for i in range(attempts):
        proc = subprocess.run(
            ["ssh-keyscan", "-T", "30", "-t", "ed25519", "-p", str(port), address],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        for line in proc.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[1] == "ssh-ed25519":
                return f"{parts[1]} {parts[2]}"
        last = proc.stderr.strip()
        time.sleep(2 * (i + 1))
    raise LabError(f"ssh-keyscan {address}:{port} returned no ed25519 key ({last})")


def known_hosts_name(address: str, port: int) -> str:
    return address if port == 22 else f"[{address}]:{port}"


def record_host_keys(hosts: list[LabHost], known_hosts: Path) -> None:
    """Scan each VM's key at its inventory address, check it against the key read over
    Vagrant's session, and (re)write those entries in known_hosts atomically."""
    scanned: dict[str, str] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        futures = {h.name: pool.submit(keyscan, h.lab_address) for h in hosts}
        for h in hosts:
            scanned[h.name] = futures[h.name].result()
            if scanned[h.name] != h.host_key:
                raise LabError(
                    f"{h.name}: the key at {h.lab_address} ({scanned[h.name][:40]}...) is not "
                    f"the VM's own ({h.host_key[:40]}...): refusing to record it"
                )
    names = {known_hosts_name(h.lab_address, 22) for h in hosts}
    kept = []
    if known_hosts.is_file():
        kept = [ln for ln in known_hosts.read_text().splitlines() if ln.split(" ")[0] not in names]
    lines = kept + [f"{known_hosts_name(h.lab_address, 22)} {scanned[h.name]}" for h in hosts]
    known_hosts.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".known_hosts-", dir=known_hosts.parent)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    os.replace(tmp, known_hosts)


def discover(settings: LabSettings, states: dict[str, str] | None = None) -> list[LabHost]:
    """The lab's running VMs, each probed once (in parallel). `states`: `machine_states`
    as the caller just read it (each `vagrant` call is seconds of Ruby and libvirt)."""
    states = machine_states(settings) if states is None else states
    running = [n for n in settings.machine_names() if states.get(n) == "running"]
    if not running:
        raise LabError("no lab VM is running: bring the lab up first (`make demo`)")
    configs = ssh_config(settings, running)
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(probe, n, configs[n], settings.net) for n in running]
        return [f.result() for f in futures]


def valid_profile(name: str) -> bool:
    return re.fullmatch(r"[a-z0-9][a-z0-9.-]*", name) is not None


def destroy(settings: LabSettings, *, log: Path | None = None) -> list[str]:
    """`vagrant destroy -f`, then remove any libvirt domain still named with the lab's
    prefix (a failed `up` can leave one Vagrant no longer tracks). Returns those removed."""
    with contextlib.suppress(LabError):  # whatever it left is removed by name below
        vagrant(settings, "destroy", "-f", log=log, timeout=600)
    return destroy_domains(settings.prefix)


def destroy_domains(prefix: str) -> list[str]:
    virsh = ["virsh", "-c", "qemu:///system"]
    listed = subprocess.run(
        [*virsh, "list", "--all", "--name"], capture_output=True, text=True, check=False
    )
    removed = []
    for name in listed.stdout.split():
        if name.startswith(prefix):
            subprocess.run([*virsh, "destroy", name], capture_output=True, check=False)
            subprocess.run(
                [*virsh, "undefine", name, "--remove-all-storage"], capture_output=True,
                check=False,
            )  # fmt: skip
            removed.append(name)
    # The lab's private network (Vagrantfile: "<prefix>net"), if no domain still uses it.
    net = f"{prefix}net"
    if subprocess.run([*virsh, "net-info", net], capture_output=True).returncode == 0:
        subprocess.run([*virsh, "net-destroy", net], capture_output=True, check=False)
        subprocess.run([*virsh, "net-undefine", net], capture_output=True, check=False)
        removed.append(net)
    return removed
