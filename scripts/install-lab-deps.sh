#!/usr/bin/env bash
# Installs and starts what the Vagrant lab needs on a Debian 12 control machine (root):
# vagrant + vagrant-libvirt from Debian, libvirt with the qemu driver, and running
# virtlogd/libvirtd. Used by `make demo`, `make lab-box` and the `vm` lab tests.
# Safe to run again: it only installs what is missing and only starts what is not running.
set -euo pipefail

PACKAGES=(
  vagrant                       # 2.3.4 in bookworm
  vagrant-libvirt               # 0.11.2: the libvirt provider (no plugin download)
  libvirt-daemon-system
  libvirt-daemon-driver-qemu
  libvirt-clients               # virsh: teardown of stray domains
  dnsmasq-base                  # DHCP/DNS of libvirt networks
  qemu-utils                    # qemu-img: raw -> qcow2 box image
  qemu-system-x86
  ebtables
  openssh-client                # ssh-keyscan: host keys right after `vagrant up`
  e2fsprogs                     # mke2fs -d: box disk from the test bed rootfs
  nftables                      # the air gap: the control node drops the GPU VMs' traffic
  file                          # the lab test checks the stick image is FAT32
)

bash "$(dirname "$0")/install-system-deps.sh" "${PACKAGES[@]}"

# Without qemu running as root, libvirt re-probes qemu on every call (4-45 s each here);
# must be set before libvirtd starts.
conf=/etc/libvirt/qemu.conf
if [[ -w $conf ]] && ! grep -q '^# gpuprov-lab' "$conf"; then
  printf '\n# gpuprov-lab: qemu as root (no per-call capability re-probe)\nuser = "root"\ngroup = "root"\n' >>"$conf"
  restart=1
fi

running() { pgrep -x "$1" >/dev/null; }
if [[ -d /run/systemd/system ]]; then
  # A normal host: let systemd own the daemons.
  systemctl start virtlogd.socket libvirtd.socket 2>/dev/null || systemctl start libvirtd
  [[ ${restart:-0} == 1 ]] && systemctl restart libvirtd
else
  # No systemd as PID 1 (containers, this test machine): start the daemons by hand.
  running virtlogd || virtlogd -d
  if [[ ${restart:-0} == 1 ]] && running libvirtd; then
    kill "$(pgrep -xo libvirtd)"; for _ in $(seq 50); do running libvirtd || break; sleep 0.1; done
  fi
  running libvirtd || libvirtd -d
fi
# Wait until libvirtd answers (first start creates its sockets).
for _ in $(seq 100); do virsh -c qemu:///system version >/dev/null 2>&1 && break; sleep 0.2; done
virsh -c qemu:///system version >/dev/null
