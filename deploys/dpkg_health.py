"""Before any package changes: finish an install an SSH drop or a kill cut short.

An interrupted dpkg (packages unpacked but not configured, or a dpkg still holding its
lock after losing its session) makes every later apt transaction fail with "dpkg was
interrupted". HostState already carries `dpkg --audit` and dpkg's lock holders (no extra
round trip); when either shows trouble this step runs `dpkg --configure -a`, waiting a
bounded time for the lock, and the plan names what it found.
"""

from __future__ import annotations

from pyinfra.api import deploy

from gpuprov.facts.node_facts import read_node_facts
from gpuprov.operations.apt import dpkg_recover, dpkg_recover_name


@deploy("dpkg health")
def dpkg_health() -> None:
    state = read_node_facts().state.dpkg
    interrupted = list(state.interrupted) if state else []
    holders = dict(state.lock_holders) if state else {}
    dpkg_recover(
        name=dpkg_recover_name(interrupted, holders),
        interrupted=interrupted,
        lock_holders=holders,
    )
