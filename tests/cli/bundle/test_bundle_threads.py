"""`bundle export` and `bundle verify` run on real OS threads: gevent's monkey patch
(which the CLI applies for pyinfra) turns threads into greenlets on one OS thread, and
then neither the file threads nor the hash pipeline use a second core."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys, threading
sys.argv = ["gpuprov", *sys.argv[1:]]
import gpuprov.cli
from gpuprov.cli import main
# Patched commands end by os._exit (no interpreter teardown): end normally here instead,
# so the probe can report what the command ran under.
gpuprov.cli._exit_now = sys.exit
try:
    main()
except SystemExit:
    pass
from gevent import monkey
print("patched" if monkey.is_module_patched("threading") else "real")
"""


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["bundle", "export", "--help"], "real"),
        (["bundle", "verify", "--help"], "real"),
        (["--debug", "bundle", "verify", "--help"], "real"),
        (["bundle", "import", "--help"], "patched"),  # SSH to the mirror host: pyinfra
    ],
)
def test_export_and_verify_run_on_os_threads(argv, expected):
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == expected
