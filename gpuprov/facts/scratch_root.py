"""A scratch-root host: one whose managed files go under a directory, not under `/`.

The `gpuprov_root` host var (an absolute path, checked by gpuprov.inventory.host_vars) is
for the engine tests on this machine, where the "hosts" are sshd processes serving this
very machine: preflight writes its identity file under that directory instead of
/etc/gpuprov. Packages, kernel modules, users, services and reboots cannot be confined to
a directory, so such a host gets neither the GPU stack nor the mirror role, and its mirror
state is not read. `gpuprov_root: /` is the real root: not a scratch root.

Decided here once; the deploys and the facts ask these functions.
"""

from __future__ import annotations

from typing import Protocol

SCRATCH_ROOT_KEY = "gpuprov_root"


class _HostData(Protocol):
    def get(self, key: str, default: object = None) -> object: ...


class _HasData(Protocol):
    @property
    def data(self) -> _HostData: ...


def root_prefix(pyhost: _HasData) -> str:
    """What to put before an absolute path of a managed file: "" on a real host, the
    scratch root without its trailing slash on a scratch-root host."""
    return str(pyhost.data.get(SCRATCH_ROOT_KEY) or "").rstrip("/")


def is_scratch_root(pyhost: _HasData) -> bool:
    """Whether the pyinfra host `pyhost` confines its changes to a scratch directory (then
    only preflight's identity file is written there: no stack, no mirror role)."""
    return root_prefix(pyhost) != ""
