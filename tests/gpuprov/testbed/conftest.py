"""Test-bed tests need root (namespaces, mounts) and the Debian tools that build hosts."""

from __future__ import annotations

import os
import shutil

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = [t for t in ("debootstrap", "sshd", "ip", "mke2fs") if not shutil.which(t)]
    reason = None
    if os.geteuid() != 0:
        reason = "test-bed hosts need root"
    elif missing:
        reason = f"missing {missing}: run `make system-deps`"
    if reason:
        for item in items:
            if "host" in item.keywords or "vm" in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))
