"""TEST BED code: real Debian hosts for gpuprov's tests and the local-lab demo.

Not used to provision real clusters. `rootfs` builds the shared Debian 12 root filesystem,
`lighthosts` starts sshd hosts in network namespaces, `vms` boots qemu VMs, and `standins`
builds the stand-in NVIDIA packages (test fixtures, never part of a real bundle).
"""
