#!/usr/bin/env bash
# Installs the Debian packages gpuprov's tests, benchmarks and local lab need, if missing,
# plus any package names given as arguments (scripts/install-lab-deps.sh passes its own).
# Safe to run again: it only calls apt-get when something is absent.
set -euo pipefail

PACKAGES=(
  debootstrap          # builds the test bed's Debian rootfs
  qemu-system-x86      # boots test VMs (software emulation)
  qemu-utils           # qemu-img overlays
  e2fsprogs            # mke2fs -d: rootfs -> disk image without loop devices
  openssh-server       # sshd for light hosts
  openssh-client       # ssh-keygen, ssh-keyscan
  iproute2             # network namespaces, veth, bridges
  gnupg                # signing apt repositories
  apt-utils            # apt-ftparchive (Packages/Release)
  dpkg-dev             # dpkg-scanpackages
  fakeroot
  nginx-light          # baseline server for the mirror benchmark
  busybox-static
  zstd
  xz-utils
  util-linux
  procps
  curl
  pciutils             # lspci: the HostState fact parses `lspci -nn`; tests parse this machine's output
  skopeo               # gpuprov bundle build: container images into an OCI layout
  umoci                # bundle tests: a tiny OCI image made offline
  docker-registry      # bundle tests: a registry on loopback to pull that image from
  dosfstools           # mkfs.vfat: the bundle tests' FAT32 "USB stick" image
  fusefat              # mounts that image where the kernel has no vfat driver (docs/bundles.md)
  gpgv                 # checks bundle manifest and apt repository signatures
  dnf                  # gpuprov bundle build for RHEL targets: dnf resolves in an installroot
  createrepo-c         # createrepo_c/modifyrepo_c: the bundle's RPM repository (and the stand-ins')
  rpm                  # rpmbuild/rpmsign: the RHEL stand-in packages of the bundle tests
  dnf-plugins-core     # dnf versionlock: the RHEL driver hold, tested in an installroot
)

PACKAGES+=("$@")

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "missing Debian packages: ${missing[*]} (run as root or: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
