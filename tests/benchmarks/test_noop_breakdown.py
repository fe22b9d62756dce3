"""benchmarks/noop_breakdown.py's "before the startup cuts" imports again exactly the
modules tests/cli/test_startup_imports.py keeps out of a no-op's start, and each of them
still exists (else the benchmark's before/after would compare nothing, or fail)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from benchmarks.noop_breakdown import BEFORE_CUTS, EAGER_BEFORE


def startup_test_module():
    path = Path(__file__).parents[1] / "cli" / "test_startup_imports.py"
    spec = importlib.util.spec_from_file_location("startup_imports_for_bench", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_before_is_exactly_the_modules_the_cuts_left_out() -> None:
    assert set(EAGER_BEFORE) == set(startup_test_module().NOT_BEFORE_CONNECT)


def test_before_imports_them_after_the_gevent_patch() -> None:
    code = BEFORE_CUTS.replace("_exit_now(run(gpuprov))", "print(sorted(sys.modules))")
    code = code.replace("from gpuprov.cli.app import run; ", "")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert all(f"'{m}'" in proc.stdout for m in EAGER_BEFORE), proc.stdout[-2000:]
    assert "'gevent.monkey'" in proc.stdout
