"""LAB: the air gap `make demo` crosses, the way a site does.

Connected side (this machine): the stand-in NVIDIA repository and a registry holding a
tiny image are served on loopback only while `gpuprov bundle build` runs, beside Debian's
archive; the bundle key is made once and kept in the lab dir. The bundle goes onto a
FAT32 disk image standing in for the USB stick (`mkfs.vfat`; mounted by the kernel, or
by fusefat where the kernel has no vfat), is verified there and imported onto mirror01.

Far side: the GPU VMs have no route but to mirror01. Three layers make that true (see
docs/lab.md): the lab network is an isolated libvirt network (no NAT), the Vagrantfile's
`airgap` provisioner removes the GPU VMs' default route for good (DHCP may not put it
back), and an nftables table on this machine drops what the GPU VMs send to it (the
control node) or through it (libvirt's NAT), except the replies of connections this
machine opened (SSH). `prove_cut` shows it from a GPU VM.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import ipaddress
import json
import re
import shlex
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gpuprov.lab.box import LabError
from gpuprov.lab.vagrant import LabSettings

IMAGE = "gpuprov-lab/hello:1.0"  # the image the bundle carries (repository:tag)
MODEL_REPO = "gpuprov-lab/tiny"  # the model the bundle carries (Hub-style org/name)
MODEL_FILE = "config.json"
MODEL_CONFIG = '{"model_type": "gpuprov-lab-tiny"}\n'
USB_IMAGE_MIB_MIN = 256
WAIT_S = 20  # for a loopback service to start listening


def upstream_ports(settings: LabSettings) -> tuple[int, int]:
    """Loopback ports of the connected side's stand-in upstreams (apt repository,
    registry): fixed per lab network so the generated inventory is stable, and different
    for the tests' lab (192.168.57) beside a user's (192.168.56)."""
    third = int(settings.net.split(".")[2])
    return 18000 + third, 18300 + third


# ---- connected side: what the bundle is built from ------------------------------------
def bundle_key(lab: Path) -> Path:
    """The lab's bundle key home (made once: `gpuprov bundle keygen` would do the same)
    and its public keyring lab/bundle.gpg, which the far side and the GPU hosts trust."""
    from gpuprov.aptrepo import generate_key, load_key

    home = lab / "bundle-key"
    key = load_key(home) if home.is_dir() else generate_key(home, "gpuprov lab bundles",
                                                            "bundles@gpuprov.invalid")  # fmt: skip
    key.export_public(lab / "bundle.gpg")
    return home


def host_dpkg_status(lab: Path) -> Path:
    """The lab hosts' installed set (the box's rootfs dpkg status): the bundle's apt
    closure is resolved against what the hosts really have, as a site does with a copy of
    a host's /var/lib/dpkg/status."""
    from gpuprov.testbed.rootfs import ensure_rootfs

    src = ensure_rootfs() / "var/lib/dpkg/status"
    dest = lab / "dpkg-status"
    data = src.read_bytes()
    if not dest.is_file() or dest.read_bytes() != data:
        tmp = dest.with_name(".dpkg-status.tmp")
        tmp.write_bytes(data)
        tmp.replace(dest)
    return dest


def lab_model(lab: Path) -> Path:
    """A tiny model directory: what the far side fetches through HF_ENDPOINT."""
    model = lab / "model"
    model.mkdir(exist_ok=True)
    files = {MODEL_FILE: MODEL_CONFIG.encode(), "weights.bin": bytes(range(256)) * 64}
    for name, data in files.items():
        if not (model / name).is_file() or (model / name).read_bytes() != data:
            (model / name).write_bytes(data)
    return model


def lab_image(lab: Path) -> Path:
    """A tiny OCI image made offline with umoci (one file, /hello.txt), kept in lab/image."""
    img = lab / "image"
    if (img / "index.json").is_file():
        return img
    work = lab / ".image.tmp"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    (work / "hello.txt").write_text("hello from the site registry\n")
    layout = work / "layout"
    for args in (["init", "--layout", str(layout)], ["new", "--image", f"{layout}:latest"],
                 ["insert", "--image", f"{layout}:latest", str(work / "hello.txt"), "/hello.txt"]):  # fmt: skip
        _run(["umoci", *args], f"umoci {args[0]}")
    layout.rename(img)
    shutil.rmtree(work)
    return img


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass


@contextlib.contextmanager
def upstreams(settings: LabSettings, repo: Path) -> Iterator[None]:
    """The stand-in NVIDIA repository and a registry with IMAGE, on loopback, for the
    duration of a bundle build. Nothing here is reachable from the lab."""
    apt_port, reg_port = upstream_ports(settings)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", apt_port), functools.partial(_Quiet, directory=str(repo))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    reg = settings.dir / "upstream-registry"
    reg.mkdir(exist_ok=True)
    (reg / "config.yml").write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {reg / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{reg_port}\n"
    )
    with open(reg / "registry.log", "a") as log:
        proc = subprocess.Popen(["docker-registry", "serve", str(reg / "config.yml")],
                                stdout=log, stderr=log)  # fmt: skip
    try:
        _wait_port("127.0.0.1", reg_port, f"docker-registry (log: {reg / 'registry.log'})")
        _run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false",
              f"oci:{lab_image(settings.dir)}:latest", f"docker://127.0.0.1:{reg_port}/{IMAGE}"],
             "skopeo copy of the lab image into the loopback registry")  # fmt: skip
        yield
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        server.shutdown()
        server.server_close()


def _wait_port(host: str, port: int, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(1)
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.2)
    raise LabError(f"{what} is not listening on {host}:{port} after {WAIT_S} s")


def _run(cmd: list[str], what: str, timeout: float = 300) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{what}: no answer after {timeout:.0f} s") from exc
    if proc.returncode != 0:
        raise LabError(f"{what} failed (exit {proc.returncode}): {proc.stderr.strip()[-1500:]}")
    return proc.stdout


def build_inputs(inventory: Path, repo: Path, lab: Path) -> str:
    """What a lab bundle is made of: the inventory's text, the stand-in repository's
    signed Release and the model and image. Same inputs: the bundle on disk is reused."""
    h = hashlib.sha256()
    for path in (inventory, repo / "dists", lab / "model", lab / "image"):
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            h.update(
                f"{f.relative_to(lab.parent) if f.is_relative_to(lab.parent) else f}\n".encode()
            )
            h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def bundle_id(bundle: Path) -> str | None:
    """The id in a bundle's (or media's) manifest.json, None when there is none."""
    try:
        data = json.loads((bundle / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    value = data.get("id") if isinstance(data, dict) else None
    return value if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value) else None


# ---- the USB stick ----------------------------------------------------------------------
def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def usb_image(image: Path, bundle_bytes: int) -> bool:
    """A FAT32 image big enough for the bundle (twice its size, at least 256 MiB; sparse).
    Returns True when it was (re)made, False when the existing one is kept."""
    want = max(USB_IMAGE_MIB_MIN, 2 * bundle_bytes // 2**20 + 64)
    if image.is_file() and image.stat().st_size >= want * 2**20:
        return False
    tmp = image.with_name(f".{image.name}.tmp")
    tmp.unlink(missing_ok=True)
    _run(["truncate", "-s", f"{want}M", str(tmp)], "truncate")
    # No volume label: fusefat lists a label as a directory entry, and export wants an empty stick.
    _run(["mkfs.vfat", "-F", "32", str(tmp)], "mkfs.vfat")
    tmp.replace(image)
    return True


@contextlib.contextmanager
def mounted(image: Path, mountpoint: Path) -> Iterator[str]:
    """The FAT32 image mounted (kernel vfat through a loop device, else fusefat); yields
    which driver mounted it. Unmounted on the way out, lazily as a last resort."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    if _is_mountpoint(mountpoint):  # left over by an interrupted run
        _unmount(mountpoint)
    kernel = subprocess.run(["mount", "-o", "loop", str(image), str(mountpoint)],
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    if kernel.returncode == 0:
        driver = "kernel vfat (loop)"
    elif shutil.which("fusefat") and Path("/dev/fuse").exists():
        _run(["fusefat", "-o", "rw+", str(image), str(mountpoint)], "fusefat")
        driver = f"fusefat (kernel: {kernel.stderr.strip() or 'no vfat'})"
    else:
        raise LabError(
            f"cannot mount {image}: {kernel.stderr.strip()}; and fusefat is not installed "
            "(Debian package fusefat)"
        )
    try:
        yield driver
    finally:
        _unmount(mountpoint)


def _is_mountpoint(path: Path) -> bool:
    return subprocess.run(["mountpoint", "-q", str(path)], check=False, timeout=30).returncode == 0


def _unmount(path: Path) -> None:
    fuse = shutil.which("fusermount")
    for _ in range(10):
        for cmd in (["umount", str(path)], *([[fuse, "-u", str(path)]] if fuse else [])):
            if subprocess.run(cmd, capture_output=True, check=False, timeout=60).returncode == 0:
                return
        if not _is_mountpoint(path):
            return
        time.sleep(0.5)
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False, timeout=60)


# ---- far side: the cut ------------------------------------------------------------------
def table_name(settings: LabSettings) -> str:
    """This lab's own nftables table (one per lab: the tests' lab runs beside a user's)."""
    return "gpuprov_airgap_" + re.sub(r"[^A-Za-z0-9_]", "_", settings.prefix).strip("_")


def _ipv4s(values: list[str]) -> list[str]:
    out = []
    for a in values:  # into nft's syntax: nothing but a dotted quad gets there
        try:
            out.append(str(ipaddress.IPv4Address(a)))
        except ValueError as exc:
            raise LabError(f"air-gap firewall: {a!r} is not an IPv4 address") from exc
    return out


def ruleset(table: str, sources: list[str], mirrors: list[str]) -> str:
    """Drop what the GPU VMs send to this machine (input) or through it (forward: libvirt's
    NAT, other networks), except replies of connections this machine opened (SSH, vagrant),
    DHCP (their management addresses must stay) and traffic to the mirror: where
    br_netfilter is loaded (bridge-nf-call-iptables=1, as here), packets between VMs on
    one libvirt bridge pass the forward hook too."""
    addrs, allowed = _ipv4s(sources), _ipv4s(mirrors)
    if not addrs or not allowed:
        raise LabError("air-gap firewall: no GPU VM addresses to cut off, or no mirror")
    src = ", ".join(addrs)
    return (
        f"table inet {table} {{\n"
        f"  set gpu_vms {{ type ipv4_addr; elements = {{ {src} }} }}\n"
        "  chain input {\n"
        "    type filter hook input priority -10; policy accept;\n"
        "    ip saddr @gpu_vms ct state established,related accept\n"
        "    ip saddr @gpu_vms udp dport 67 accept\n"
        "    ip saddr @gpu_vms counter drop\n"
        "  }\n"
        "  chain forward {\n"
        "    type filter hook forward priority -10; policy accept;\n"
        f"    ip saddr @gpu_vms ip daddr {{ {', '.join(allowed)} }} accept\n"
        "    ip saddr @gpu_vms counter drop\n"
        "  }\n"
        "}\n"
    )


def cut(settings: LabSettings, sources: list[str], mirrors: list[str]) -> str:
    """Install (or replace) this lab's table; returns the ruleset applied."""
    table = table_name(settings)
    text = ruleset(table, sources, mirrors)
    uncut(settings)
    proc = subprocess.run(["nft", "-f", "-"], input=text, capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    if proc.returncode != 0:
        raise LabError(f"nft -f refused the lab's air-gap table: {proc.stderr.strip()}")
    return text


def uncut(settings: LabSettings) -> bool:
    """Remove this lab's table; True when there was one."""
    if not shutil.which("nft"):
        return False
    table = table_name(settings)
    listed = subprocess.run(["nft", "list", "table", "inet", table], capture_output=True,
                            text=True, timeout=60, check=False)  # fmt: skip
    if listed.returncode != 0:
        return False
    subprocess.run(["nft", "delete", "table", "inet", table], check=True, timeout=60)
    return True


def management_addresses(
    settings: LabSettings, names: list[str], known: dict[str, str] | None = None
) -> list[str]:
    """The management-network addresses of the named VMs (`vagrant ssh-config` HostName).
    `known`: name -> that HostName as the caller already read it (no second `vagrant`
    call); checked the same way."""
    from gpuprov.lab.vagrant import parse_ssh_config, vagrant

    if known is not None and all(n in known for n in names):
        hosts = {n: {"hostname": known[n]} for n in names}
    else:
        out = vagrant(settings, "ssh-config", *names, timeout=300).stdout
        hosts = parse_ssh_config(out)
    addrs = []
    for name in names:
        value = hosts.get(name, {}).get("hostname", "")
        if not re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", value):
            raise LabError(f"`vagrant ssh-config {name}`: expected an IPv4 HostName, got {value!r}")
        addrs.append(value)
    return addrs


@dataclass(frozen=True)
class Probe:
    what: str
    ok: bool  # the expected outcome happened
    detail: str


# Run on a GPU VM: each line `NAME RC OUTPUT`. Bounded: every fetch has a timeout. The
# probes run at once (each its own job, its line in its own file, printed in order after
# `wait`): the proof is three timeouts (DNS 15 s, two dropped connections 8 s each), which
# one after the other made 31 s per GPU host of every demo run; at once, the longest one.
PROBE_SCRIPT = r"""
d=$(mktemp -d) || exit 1
trap 'rm -rf "$d"' EXIT
probe() {
  name=$1; shift
  (
    out=$("$@" 2>&1); rc=$?
    echo "$name $rc $(printf '%s' "$out" | tr '\n' ' ' | cut -c1-200)" > "$d/$name"
  ) &
}
probe default_route sh -c 'ip route show default | grep -q . && ip route show default; test -z "$(ip route show default)"'
probe route_internet ip route get 151.101.2.132
probe dns_debian timeout 15 getent hosts deb.debian.org
probe mirror timeout 15 bash -c 'echo > /dev/tcp/{mirror}/22'
probe control_lab curl -sS -m 8 -o /dev/null {control_lab_url}
probe control_mgmt curl -sS -m 8 -o /dev/null {control_mgmt_url}
wait
for name in default_route route_internet dns_debian mirror control_lab control_mgmt; do
  cat "$d/$name" 2>/dev/null
done
"""


def probe_script(mirror: str, control_lab_url: str, control_mgmt_url: str) -> str:
    """The probes for a GPU VM whose mirror is at `mirror` (an IPv4 address: its SSH port
    answering proves the route to it)."""
    return (
        PROBE_SCRIPT.replace("{mirror}", str(ipaddress.IPv4Address(mirror)))
        .replace("{control_lab_url}", shlex.quote(control_lab_url))
        .replace("{control_mgmt_url}", shlex.quote(control_mgmt_url))
    )


# probe name -> (what it shows, whether success (rc 0) is the expected outcome)
EXPECTED = {
    "default_route": ("no default route", True),
    "route_internet": ("no route to an internet address", False),
    "dns_debian": ("deb.debian.org does not resolve", False),
    "mirror": ("mirror01 is reachable (its sshd answers)", True),
    "control_lab": ("the control node's lab address is unreachable", False),
    "control_mgmt": ("the control node's management address is unreachable", False),
}


def parse_probes(output: str) -> list[Probe]:
    """The probe script's lines, judged; a missing probe is a failed one."""
    seen: dict[str, tuple[int, str]] = {}
    for line in output.splitlines():
        m = re.fullmatch(r"([a-z_]+) (\d+) ?(.*)", line.strip())
        if m and m.group(1) in EXPECTED:
            seen[m.group(1)] = (int(m.group(2)), m.group(3).strip())
    probes = []
    for name, (what, want_success) in EXPECTED.items():
        if name not in seen:
            probes.append(Probe(what, False, "probe did not run"))
            continue
        rc, detail = seen[name]
        probes.append(Probe(what, (rc == 0) == want_success, f"exit {rc}: {detail}".strip()))
    return probes


@contextlib.contextmanager
def listener(address: str) -> Iterator[str]:
    """A real HTTP listener on one of this machine's addresses (port chosen by the kernel),
    so "unreachable" means the cut, not a closed port. Yields its URL."""
    server = http.server.ThreadingHTTPServer((address, 0), _Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://{address}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def gateway_of(address: str) -> str:
    """The .1 of a VM address's /24: the control node's address on that libvirt network."""
    parts = str(ipaddress.IPv4Address(address)).split(".")
    return ".".join([*parts[:3], "1"])


# ---- far side: using the mirror from a GPU host -------------------------------------------
# apt with the sources gpuprov wrote and nothing else: every source must be the mirror's.
APT_SCRIPT = r"""
set -euo pipefail
{ grep -rhoE '^(URIs:|deb) *[^ ]+' /etc/apt/sources.list /etc/apt/sources.list.d/ || true; } \
  2>/dev/null | sort -u | sed 's/^/source /'
out=$(sudo -n timeout 300 apt-get update -o Acquire::Retries=0 2>&1) || { echo "$out"; exit 1; }
echo "$out" | tail -4
if echo "$out" | grep -qE '^(W|E):'; then exit 1; fi
sudo -n apt-cache policy containerd | sed -n '1,6p'
"""


def pull_script(registry: str, repo: str, tag: str) -> str:
    """Pull repo:tag from the mirror's registry with the installed containerd's ctr (plain
    HTTP: the lab's registry has no TLS), then show what containerd holds."""
    ref = shlex.quote(f"{registry}/{repo}:{tag}")
    return (
        "set -euo pipefail\n"
        f"curl -fsS -m 20 http://{registry}/v2/_catalog\necho\n"
        f"sudo -n timeout 300 ctr -n gpuprov-lab images pull --plain-http {ref} | tail -2\n"
        f"sudo -n ctr -n gpuprov-lab images ls -q | grep -Fx {ref}\n"
    )


def model_script() -> str:
    """Fetch the model file the way a Hugging Face client does, through the HF_ENDPOINT
    every login shell gets (bash -l reads /etc/profile.d)."""
    path = shlex.quote(f"/{MODEL_REPO}/resolve/main/{MODEL_FILE}")
    return (
        "set -eu\n"
        'bash -lc \'echo "HF_ENDPOINT=$HF_ENDPOINT"; test -n "$HF_ENDPOINT"; '
        f'curl -fsS -m 30 "$HF_ENDPOINT"{path}\'\n'
    )
