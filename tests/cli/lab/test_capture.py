"""`gpuprov lab capture` runs the real HostState script on this machine (no GPU here)."""

import json
import subprocess
import sys


def test_capture_facts_runs_the_real_script_here():
    out = subprocess.run(
        [sys.executable, "-m", "gpuprov.cli", "lab", "capture", "facts"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert (
        data["kernel"]
        == subprocess.run(["uname", "-r"], capture_output=True, text=True).stdout.strip()
    )
    assert data["nvidia_smi"]["present"] is False


def test_capture_verify_without_gpus_says_so_and_fails():
    out = subprocess.run(
        [sys.executable, "-m", "gpuprov.cli", "lab", "capture", "verify"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1
    assert "no system profile matches" in json.loads(out.stdout)["error"]


def test_the_lab_commands_run_unpatched_like_the_programs_they_replace():
    from gpuprov.cli import _needs_gevent

    for cmd in ("demo", "clean", "box", "hardware", "capture"):
        assert not _needs_gevent(["lab", cmd]) and not _needs_gevent(["--debug", "lab", cmd])
    assert _needs_gevent(["lab", "inventory"])  # probes hosts with paramiko, as before
