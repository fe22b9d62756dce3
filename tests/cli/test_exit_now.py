"""The gevent-patched commands end with os._exit (no interpreter teardown): what must
happen at exit still does, and the exit code is the command's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROGRAM = """
import atexit, sys, tempfile
tmp = tempfile.TemporaryDirectory(prefix="gpuprov-exit-")   # cleaned by weakref.finalize
print(tmp.name, file=sys.stderr)
atexit.register(lambda: sys.stdout.write("atexit ran\\n"))
sys.stdout.write("x" * 200000 + "\\n")                      # more than a pipe holds
from gpuprov.cli import _exit_now
_exit_now(3)
print("never")
"""


def test_flushes_runs_atexit_and_keeps_the_code() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 3
    lines = proc.stdout.splitlines()
    assert lines == ["x" * 200000, "atexit ran"]
    assert not Path(proc.stderr.strip()).exists()  # the finalizer removed it


def test_a_command_exits_with_its_code() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gpuprov.cli", "plan", "/nonexistent/inventory.yaml"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and "inventory file not found" in proc.stderr
