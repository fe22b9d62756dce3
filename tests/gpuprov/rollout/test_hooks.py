"""Drain/undrain hook processes (issue 13, item 17): a timed-out hook is stopped whole."""

from __future__ import annotations

import time
from pathlib import Path

from gpuprov.rollout.hooks import LocalHookRunner

from .support import make_hosts


def test_timed_out_hook_kills_its_whole_process_group(tmp_path: Path):
    marker = tmp_path / "undrained-after-timeout"
    # The shell starts a grandchild that would act (write the marker) after the timeout,
    # as a `kubectl uncordon` started by a wrapper script would.
    hook = f"(sleep 2; touch {marker}) & sleep 30"
    started = time.monotonic()
    result = LocalHookRunner(timeout=1).run(hook, make_hosts(1)[0])
    took = time.monotonic() - started
    assert not result.ok and result.returncode is None
    assert "timed out after 1s" in result.output
    assert took < 2, f"the runner waited {took:.1f}s for the hook's children"
    time.sleep(2.5)
    assert not marker.exists(), "the hook's grandchild outlived the timeout"


def test_hook_output_and_exit_code_are_kept(tmp_path: Path):
    result = LocalHookRunner(timeout=10).run("echo out; echo err >&2; exit 3", make_hosts(1)[0])
    assert (result.ok, result.returncode) == (False, 3)
    assert "out" in result.output and "err" in result.output
