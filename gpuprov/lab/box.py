"""LAB: the local Vagrant box `gpuprov/debian12-local`, built from the test bed's cached
Debian 12 rootfs with no download beyond Debian's package mirror.

The rootfs stays pristine: an overlay (in a private mount namespace, gone when the build
ends) adds the `vagrant` user with the insecure key of the installed Vagrant (Vagrant
swaps it for a per-VM key on first `up`), passwordless sudo and first-boot host keys;
`mke2fs -d` writes the merged tree into an ext4 image, `qemu-img` converts it to the
box's qcow2. The disk has no boot loader: the box carries the kernel and initrd and its
own Vagrantfile boots them directly (libvirt `kernel`/`initrd`/`cmd_line`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gpuprov.errors import GpuprovError
from gpuprov.lab import LOCAL_BOX, lab_dir, vagrant_home

# Sparse. gpuprov's preflight wants 10 GB free on / (a real GPU host needs it for the stack).
DISK_SIZE_GB = 16
VAGRANT_KEY_DIRS = (
    Path("/usr/share/rubygems-integration/all/gems"),  # Debian's vagrant package
    Path("/opt/vagrant/embedded/gems/gems"),  # HashiCorp's package
)

# Run in a chroot of the overlay. $VAGRANT_PUB is the insecure public key.
_CUSTOMIZE = r"""
set -eu
id vagrant >/dev/null 2>&1 || useradd --create-home --shell /bin/bash vagrant
echo 'vagrant ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/vagrant
chmod 0440 /etc/sudoers.d/vagrant
install -d -m 0700 -o vagrant -g vagrant /home/vagrant/.ssh
printf '%s\n' "$VAGRANT_PUB" > /home/vagrant/.ssh/authorized_keys
chown vagrant:vagrant /home/vagrant/.ssh/authorized_keys
chmod 0600 /home/vagrant/.ssh/authorized_keys
# Every VM makes its own host keys on first boot (the image has none).
cat > /etc/systemd/system/gpuprov-lab-hostkeys.service <<'EOF'
[Unit]
Description=LAB: SSH host keys of this VM (first boot)
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
# ed25519 only (the test bed's sshd uses no other): RSA keygen takes long under emulation.
ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key

[Install]
WantedBy=multi-user.target ssh.service
EOF
systemctl enable gpuprov-lab-hostkeys.service
# The test bed's seed disk does not exist under Vagrant: skip its 10 s wait for it.
systemctl disable gpuprov-testbed-seed.service 2>/dev/null || true
echo gpuprov-lab > /etc/hostname
"""

# The box's own Vagrantfile: merged under the project's, so any Vagrantfile using the box
# boots it without knowing about direct kernel boot.
_BOX_VAGRANTFILE = """\
# gpuprov/debian12-local: Debian 12 from the gpuprov test bed (built by `make lab-box`).
# The disk has no boot loader: libvirt boots the kernel and initrd shipped in this box.
Vagrant.configure("2") do |config|
  config.vm.boot_timeout = 900                 # software emulation: first boot ~1-3 min
  config.vm.synced_folder ".", "/vagrant", disabled: true
  config.vm.provider :libvirt do |lv|
    lv.driver = "qemu"                         # /dev/kvm is not usable everywhere
    lv.cpu_mode = "custom"
    lv.cpu_model = "qemu64"
    lv.disk_bus = "virtio"
    lv.graphics_type = "none"                  # a serial console only: no VNC, no VGA
    lv.kernel = File.join(__dir__, "vmlinuz")
    lv.initrd = File.join(__dir__, "initrd.img")
    lv.cmd_line = "root=/dev/vda rw console=ttyS0 net.ifnames=0 panic=-1 " \\
                  "init_on_alloc=0 mitigations=off nowatchdog quiet"
  end
end
"""


class LabError(GpuprovError):
    """A lab step (box build, vagrant, host keys) failed; the message says which."""


def require_testbed() -> None:
    """The box and the simulated GPUs come from the test bed, which is test tooling: a
    checkout has it, the wheel a site installs does not."""
    import importlib.util

    if importlib.util.find_spec("gpuprov.testbed") is None:
        raise LabError(
            "the local lab is built from gpuprov's test bed, which is not part of an installed "
            "gpuprov: run it from a checkout (make demo, make lab-box)"
        )


@dataclass(frozen=True)
class Box:
    name: str
    file: Path  # the .box archive
    key: str  # content key: rootfs + customization + box Vagrantfile
    built: bool  # False when the cached one was reused


def vagrant_insecure_pub() -> Path:
    for base in VAGRANT_KEY_DIRS:
        found = sorted(base.glob("vagrant-*/keys/vagrant.pub")) if base.is_dir() else []
        if found:
            return found[-1]
    raise LabError("Vagrant's insecure key (keys/vagrant.pub) not found: is vagrant installed?")


def _run(cmd: list[str], log: Path, **kw: object) -> None:
    with open(log, "a") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=False, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise LabError(f"{cmd[0]} failed (exit {proc.returncode}); see {log}")


def build_box(*, force: bool = False, out_dir: Path | None = None) -> Box:
    """Build (or reuse) the box archive from the test bed rootfs; ~30-60 s here."""
    require_testbed()
    from gpuprov.testbed.rootfs import ensure_rootfs, kernel_and_initrd

    rootfs = ensure_rootfs()
    kernel, initrd = kernel_and_initrd(rootfs)
    pub = vagrant_insecure_pub().read_text().strip()
    key = hashlib.sha256(
        f"{rootfs.name}\n{_CUSTOMIZE}\n{_BOX_VAGRANTFILE}\n{pub}\n{DISK_SIZE_GB}".encode()
    ).hexdigest()[:12]
    out = out_dir or lab_dir() / "box"
    out.mkdir(parents=True, exist_ok=True)
    archive = out / "debian12-local.box"
    stamp = out / "debian12-local.key"
    if not force and archive.is_file() and stamp.is_file() and stamp.read_text().strip() == key:
        return Box(LOCAL_BOX, archive, key, built=False)

    log = out / "build.log"
    log.write_text("")
    work = Path(tempfile.mkdtemp(prefix=".box-", dir=out))
    try:
        for sub in ("upper", "work", "merged", "box"):
            (work / sub).mkdir()
        disk = work / "disk.raw"
        # One private mount namespace: the overlay disappears with it, even on failure.
        script = (
            'mount -t overlay overlay -o "lowerdir=$1,upperdir=$2/upper,workdir=$2/work" '
            '"$2/merged" && chroot "$2/merged" /bin/sh -c "$3" && '
            'mke2fs -q -t ext4 -L gpuprov-root -d "$2/merged" "$2/disk.raw" "$4"G'
        )
        _run(
            ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script, "sh",
             str(rootfs), str(work), _CUSTOMIZE, str(DISK_SIZE_GB)],
            log,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "VAGRANT_PUB": pub},
        )  # fmt: skip
        boxdir = work / "box"
        _run(["qemu-img", "convert", "-O", "qcow2", str(disk), str(boxdir / "box.img")], log)
        disk.unlink()
        shutil.copyfile(kernel, boxdir / "vmlinuz")
        shutil.copyfile(initrd, boxdir / "initrd.img")
        (boxdir / "metadata.json").write_text(
            json.dumps({"provider": "libvirt", "format": "qcow2", "virtual_size": DISK_SIZE_GB})
            + "\n"
        )
        (boxdir / "Vagrantfile").write_text(_BOX_VAGRANTFILE)
        (boxdir / "info.json").write_text(json.dumps({"gpuprov_box_key": key}) + "\n")
        tmp_archive = work / archive.name
        # A plain tar: compressing ~1 GB would cost minutes of CPU for a local file.
        with tarfile.open(tmp_archive, "w") as tar:
            for name in ("metadata.json", "Vagrantfile", "info.json", "vmlinuz", "initrd.img",
                         "box.img"):  # fmt: skip
                tar.add(boxdir / name, arcname=name)
        tmp_archive.replace(archive)
        stamp.write_text(key + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Box(LOCAL_BOX, archive, key, built=True)


def installed_key(name: str = LOCAL_BOX) -> str | None:
    """The build key of the installed box (from its info.json), or None."""
    boxes = vagrant_home() / "boxes" / name.replace("/", "-VAGRANTSLASH-")
    for info in sorted(boxes.glob("*/libvirt/info.json")):
        try:
            return str(json.loads(info.read_text()).get("gpuprov_box_key"))
        except (OSError, ValueError):
            return None
    return None


def add_box(box: Box) -> bool:
    """`vagrant box add --force` unless the same build is installed. True if it added."""
    if installed_key(box.name) == box.key:
        return False
    log = box.file.parent / "build.log"
    # vagrant-libvirt 0.11 names the pool's copy of a box by name, version and the time it
    # was added, so a rebuilt box never reuses the previous image (older copies may still
    # back running VMs: remove_box deletes them).
    _run(["vagrant", "box", "add", "--force", "--name", box.name, str(box.file)], log)
    return True


def remove_box(name: str = LOCAL_BOX) -> None:
    """Remove the box from Vagrant and its image from libvirt's pool (if present)."""
    subprocess.run(
        ["vagrant", "box", "remove", "--force", "--all", name], capture_output=True, check=False
    )
    _delete_pool_images(name)


def _delete_pool_images(name: str) -> None:
    # vagrant-libvirt uploads each box into the pool as <box>_vagrant_box_image_<ver>_box.img.
    prefix = name.replace("/", "-VAGRANTSLASH-") + "_vagrant_box_image_"
    vols = subprocess.run(
        ["virsh", "-c", "qemu:///system", "vol-list", "default"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    # A table: "Name Path" header, a rule, then one volume per line (name first).
    for line in vols.stdout.splitlines()[2:]:
        vol = line.split()[0] if line.split() else ""
        if vol.startswith(prefix):
            subprocess.run(
                ["virsh", "-c", "qemu:///system", "vol-delete", "--pool", "default", vol],
                capture_output=True, check=False,
            )  # fmt: skip
