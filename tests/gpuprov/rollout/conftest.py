from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SUPPORT = Path(__file__).with_name("support.py")


def _load_support():
    # --import-mode=importlib puts no test folder on sys.path: load the helper by path.
    if "rollout_support" not in sys.modules:
        spec = importlib.util.spec_from_file_location("rollout_support", SUPPORT)
        module = importlib.util.module_from_spec(spec)
        sys.modules["rollout_support"] = module
        spec.loader.exec_module(module)
    return sys.modules["rollout_support"]


@pytest.fixture(scope="session")
def support():
    return _load_support()


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text("cluster: {name: test}\n")
    return path
