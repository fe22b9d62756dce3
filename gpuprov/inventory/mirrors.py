"""Which mirror host each GPU host uses, and the client settings that follow from it.

A site may run several mirror hosts (`role: mirror`). A GPU host uses the nearest one by
failure domain: the first of `cluster.mirror.nearest` (rack, row, room, site by default)
whose value it shares with a mirror host; with no shared domain, the first mirror
(`cluster.mirror.host`). Ties go to the mirror listed first, so the choice depends only on
the inventory file, never on dict or set order, and `gpuprov plan` shows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gpuprov.inventory.model import Cluster, Host, MirrorRef

# pyinfra host data key of a GPU host's MirrorChoice (set by gpuprov.engine.connect)
MIRROR_CHOICE_KEY = "gpuprov_mirror_choice"
APT_SUITE = "gpuprov"  # the bundle's repositories: apt/<os-id>/dists/gpuprov/main
APT_COMPONENTS = ("main",)


@dataclass(frozen=True)
class MirrorChoice:
    """The mirror host a GPU host uses, why, and the ports its services listen on."""

    mirror: Host
    ref: MirrorRef
    reason: str  # "same rack r01", "no shared failure domain: the first mirror"

    def base_url(self, port: int) -> str:
        return f"{self.ref.scheme}://{_url_host(self.mirror.address)}:{port}"

    def settings(self, os_id: str | None) -> dict[str, Any]:
        """The `gpuprov_mirror_client` value for a host running `os_id` (apt/<os-id> on
        the mirror; no apt source without it or without the bundle keyring)."""
        out: dict[str, Any] = {
            "mirror": self.mirror.name,
            "registry": f"{_url_host(self.mirror.address)}:{self.ref.registry_port}",
            "registry_scheme": self.ref.scheme,
            "hf_endpoint": self.base_url(self.ref.models_port),
        }
        if not os_id or self.ref.keyring is None:
            return out
        out["keyring"] = str(self.ref.keyring)
        if _manager(os_id) == "dnf":
            # The bundle's rpm/<os-id>/, beside the apt repositories on the same port.
            out["rpm_url"] = f"{self.base_url(self.ref.apt_port)}/rpm/{os_id}/"
            if self.ref.rpm_keys is not None:
                out["rpm_keys"] = str(self.ref.rpm_keys)
            return out
        out |= {
            "apt_url": f"{self.base_url(self.ref.apt_port)}/{os_id}",
            "suite": APT_SUITE,
            "components": list(APT_COMPONENTS),
        }
        return out


def _manager(os_id: str) -> str:
    """apt or dnf for a known OS; apt for one the tables lack (the apt path names it)."""
    from gpuprov import tables

    try:
        return tables.package_manager(os_id)
    except tables.TableError:
        return "apt"


def _url_host(address: str) -> str:
    return f"[{address}]" if ":" in address else address  # an IPv6 literal in a URL


def mirror_hosts(cluster: Cluster) -> list[Host]:
    """Every mirror host: `cluster.mirror.host` first, then the other `role: mirror` hosts
    in file order."""
    first = cluster.mirror_host()
    rest = [h for h in cluster.hosts.values() if h.role == "mirror" and h is not first]
    return ([first] if first is not None else []) + rest


def nearest_mirror(cluster: Cluster, host: Host) -> MirrorChoice | None:
    """The mirror `host` should use; None when the inventory has no `mirror:`."""
    if cluster.mirror is None:
        return None
    mirrors = mirror_hosts(cluster)
    if not mirrors:
        return None
    for key in cluster.mirror.nearest:
        value = host.domains.get(key)
        if value is None:
            continue
        for mirror in mirrors:
            if mirror.domains.get(key) == value:
                return MirrorChoice(mirror, cluster.mirror, f"same {key} {value}")
    return MirrorChoice(mirrors[0], cluster.mirror, "no shared failure domain: the first mirror")


def mirror_choices(cluster: Cluster, hosts: list[Host]) -> dict[str, MirrorChoice]:
    """GPU host name -> its mirror, for the GPU hosts among `hosts`."""
    out = {}
    for h in hosts:
        if h.role == "gpu" and (choice := nearest_mirror(cluster, h)) is not None:
            out[h.name] = choice
    return out
