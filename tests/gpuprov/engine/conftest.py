from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from loopback_sshd import LoopbackSshd, start  # noqa: E402


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackSshd]:
    if os.geteuid() != 0:
        pytest.skip("needs root to run sshd")
    server = start(tmp_path_factory.mktemp("sshd"))
    try:
        yield server
    finally:
        server.stop()
