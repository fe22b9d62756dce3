"""Hook processes under gevent (how the CLI runs a rollout) and without: started without
forking the control process, waited for without blocking it, output and exit kept, a
timed-out hook's whole group stopped (docs/scale.md: forks made the staged rollout's
control-node CPU grow with the square of the host count)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gpuprov.rollout.hook_process import OUTPUT_LIMIT

PROBE = Path(__file__).with_name("hooks_probe.py")


def probe(tmp_path: Path, *flags: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(PROBE), str(tmp_path / "marker"), *flags],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("flags", [("--gevent",), ()], ids=["gevent", "plain"])
def test_hooks_never_fork_the_control_process(tmp_path: Path, flags: tuple[str, ...]):
    doc = probe(tmp_path, *flags)
    results = doc["results"]
    # The operation count that made the rollout quadratic: one fork of the whole process
    # per hook (gevent's Popen). A vfork spawn runs no at-fork handler.
    assert doc["forks"] == 0
    assert all(results[f"drain{i}"]["ok"] for i in range(40))
    assert results["drain7"]["command"] == "true drain gpu007"

    exit3 = results["exit3"]
    assert (exit3["ok"], exit3["returncode"]) == (False, 3)
    assert "out" in exit3["output"] and "err" in exit3["output"]

    big = results["big"]  # more than a pipe holds: read while the hook runs, tail kept
    assert big["ok"] and big["output"].endswith("END")
    assert OUTPUT_LIMIT - 10 <= len(big["output"]) <= OUTPUT_LIMIT + 10

    timeout = results["timeout"]
    assert (timeout["ok"], timeout["returncode"]) == (False, None)
    assert "timed out after 1s" in timeout["output"]
    assert doc["took"]["timeout"] < 2.5, "the runner waited for the hook's children"

    missing = results["missing"]
    assert (missing["ok"], missing["returncode"]) == (False, None)
    assert "No such file" in missing["output"]

    # stdin, stdout, stderr and `ls`'s own: no pipe of another hook, no fd the control
    # process inherited (the probe holds fd 77 open, inheritable)
    assert results["fds"]["output"].split() == ["0", "1", "2", "3"]

    assert results["slow"]["ok"] and doc["took"]["slow"] >= 1
    # A 1 s hook did not stop the process: the heartbeat (a greenlet under gevent) ran.
    assert doc["ticks"] >= 10

    time.sleep(2.5)
    assert not (tmp_path / "marker").exists(), "the timed-out hook's grandchild outlived it"


@pytest.mark.parametrize("flags", [("--gevent",), ()], ids=["gevent", "plain"])
def test_the_first_hooks_exit_is_seen(tmp_path: Path, flags: tuple[str, ...]):
    """gevent: libev's SIGCHLD handler must be installed before the spawn. Without it the
    first hook's exit went unseen (the signal discarded, the hook a zombie) and the
    rollout waited on its canary's drain hook forever."""
    result = probe(tmp_path, "--alone", *flags)
    # Unseen, the exit ends as a timeout: not ok, no code, "(no exit status reported)"
    assert (result["ok"], result["returncode"], result["output"]) == (True, 0, "")
