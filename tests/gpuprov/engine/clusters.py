"""Build Cluster objects in Python for engine tests (the YAML loader is another module)."""

from __future__ import annotations

from pathlib import Path

from gpuprov.inventory.model import (
    Cluster,
    DriverPin,
    Group,
    Host,
    RolloutPolicy,
    SSHSettings,
    Stack,
)


def make_cluster(
    tmp: Path,
    hosts: list[tuple[str, str, int]],
    key: Path,
    root: Path | None = None,
    ignore: tuple[str, ...] = ("headers",),  # this test machine's kernel has no headers
) -> Cluster:
    """hosts: (name, address, port). Every host gets `gpuprov_root` = root/<name>."""
    inventory = tmp / "inventory.yaml"
    inventory.write_text("# built in Python by the test\n")
    stack = Stack(driver=DriverPin(branch="580", version="580.95.05"))
    built: dict[str, Host] = {}
    for name, address, port in hosts:
        ssh = SSHSettings(user="root", port=port, key=key, connect_timeout=3)
        host_vars: dict[str, object] = {
            "gpuprov_min_free_gb": 0.1,
            "gpuprov_preflight_ignore": list(ignore),
        }
        if root is not None:
            host_vars["gpuprov_root"] = str(root / name)
        built[name] = Host(
            name=name,
            address=address,
            role="gpu",
            group="lab",
            ssh=ssh,
            stack=stack,
            profile=None,
            vars=host_vars,
        )
    return Cluster(
        name="testcluster",
        path=inventory,
        stack=stack,
        mirror=None,
        ssh=SSHSettings(user="root", key=key),
        rollout=RolloutPolicy(),
        groups={"lab": Group("lab", "gpu", None, tuple(built))},
        hosts=built,
    )
