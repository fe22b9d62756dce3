"""Shared test fixtures. The real captured tool outputs live in ../shared/reference/captures
(beside the checkout, as in CI); they are read from there, never copied."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import types
from pathlib import Path

import pytest


def _import_pyinfra_cli_without_patching() -> None:
    """pyinfra_cli/__init__.py runs gevent's monkey.patch_all() on import. The
    pyinfra-testing runner imports pyinfra_cli.util, which would patch the whole pytest
    process and break the asyncio-based mirror tests. Register the package without
    running its __init__; its submodules import normally. (gpuprov's own CLI patches in
    main(), and tests run it as a subprocess.)"""
    if "pyinfra_cli" in sys.modules:
        return
    spec = importlib.util.find_spec("pyinfra_cli")
    if spec is None or spec.submodule_search_locations is None:
        return
    package = types.ModuleType("pyinfra_cli")
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    sys.modules["pyinfra_cli"] = package


_import_pyinfra_cli_without_patching()

# Test support modules (tests/support/), imported by name: nvidia_smi_text turns the public
# `nvidia-smi -q` text captures (the only full H100/H800 ones) into reports for the verdict
# tests; signed_bundles, mirror_lab, oci_images and gpu_vm are the setup several test
# files share.
sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CAPTURES = Path(os.environ.get("GPUPROV_CAPTURES") or SHARED / "reference" / "captures")


@pytest.fixture(scope="session")
def captures() -> Path:
    assert CAPTURES.is_dir(), f"real captures not found at {CAPTURES} (set GPUPROV_CAPTURES)"
    return CAPTURES


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Test-bed hosts (markers host, vm) need root (namespaces, mounts) and the Debian tools
    that build them: without those they are skipped with the reason, wherever they live."""
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
