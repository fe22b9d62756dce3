"""The cluster inventory: model (model.py), loading and validation (loader.py)."""

from gpuprov.inventory.model import (
    Cluster,
    DriverPin,
    Group,
    Host,
    MirrorRef,
    RolloutPolicy,
    SSHSettings,
    Stack,
)

__all__ = [
    "Cluster",
    "DriverPin",
    "Group",
    "Host",
    "MirrorRef",
    "RolloutPolicy",
    "SSHSettings",
    "Stack",
]
