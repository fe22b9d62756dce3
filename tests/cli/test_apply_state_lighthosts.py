"""`gpuprov apply` and its rollout state, the real CLI against light hosts (issue 13, items 9
and 10). Root only.

- Item 9: an interrupted rollout leaves a host that passed its gates but was never
  undrained, and another that failed; a new apply refuses (naming --resume and
  --abandon) and changes nothing; `--abandon` undrains the first, lists the second as
  staying drained and runs it again (a drained host is never "converged").
- Item 10: two concurrent applies held in their dry runs and let go together: one
  applies, the other stops at the lock before its first change (exit 5, naming the
  first) and never applies the mirror host.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .test_staged_apply_lighthosts import Site, wait_for

pytestmark = pytest.mark.host


@pytest.fixture(scope="module")
def lab() -> Iterator[object]:
    if os.geteuid() != 0:
        pytest.skip("light hosts need root")
    from gpuprov.testbed.lighthosts import LightHostLab

    with LightHostLab(5, prefix="abd") as lab:  # one mirror, four GPU hosts
        yield lab


def hooks_settled(site: Site) -> None:
    """Wait until no hook of the killed apply still runs (hooks run in their own session,
    so the other hosts' undrain hooks outlive the SIGKILL and finish a moment later)."""
    wait_for(
        lambda: subprocess.run(["pgrep", "-f", str(site.log)], capture_output=True).returncode == 1
    )


def undrained(site: Site) -> list[str]:
    return [h for k, h, _ in site.hooks() if k == "undrain"]


def test_interrupted_rollout_is_resumed_or_abandoned_never_skipped(lab, tmp_path: Path):
    arm = tmp_path / "kill-at-undrain"
    probe = Site(lab, tmp_path, "abandon", {"canary": 1, "waves": ["100%"]}, mirror=True)
    [canary], wave1 = (w["hosts"] for w in probe.waves())
    bad, killer = wave1[0], wave1[1]
    gate = "test ! -e /var/tmp/abandon/badgate"
    # The undrain hook of `killer` SIGKILLs the apply (the hook's parent) once, mid-undrain:
    # its deploy and gates passed, its undrain never completed.
    hook = f"echo undrain {{host}} $(date +%s.%N) >> {tmp_path / 'hooks.log'}"
    undrain = f"if [ {{host}} = {killer} ] && rm {arm} 2>/dev/null; then kill -KILL $PPID; exit 1; fi; {hook}"
    site = Site(lab, tmp_path, "abandon", {
        "canary": 1, "waves": ["100%"], "max_fail": 3, "gates": [{"command": gate}],
        "undrain": undrain,
    }, mirror=True)  # fmt: skip
    lab.exec(bad, "mkdir -p /var/tmp/abandon && touch /var/tmp/abandon/badgate")
    arm.touch()

    proc = site.run("apply", str(site.inventory), "--yes")
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    hooks_settled(site)
    rows = site.host_rows()
    assert rows[canary] == "done" and rows[bad] == "failed" and rows[killer] == "undraining"
    assert killer not in undrained(site) and bad not in undrained(site)
    hooks_before = site.hooks()

    # A new apply refuses, says what to do, and changes nothing (no hook, no new rollout).
    proc = site.run("apply", str(site.inventory), "--yes")
    assert proc.returncode == 2, proc.stderr
    assert "rollout 1 of" in proc.stderr and "did not finish (running" in proc.stderr
    assert "--resume" in proc.stderr and "--abandon" in proc.stderr
    assert bad in proc.stderr and killer in proc.stderr  # named as maybe drained
    assert site.hooks() == hooks_before
    assert site.run("rollout", "status", str(site.inventory)).returncode == 0

    # A dry run warns, and plans the drained hosts into a wave (never "converged").
    proc, doc = site.apply("--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "--abandon" in proc.stderr  # a warning on stderr; the JSON stays clean
    planned = {h for w in doc["rollout_plan"]["waves"] for h in w["hosts"]}
    assert {bad, killer} <= planned and canary not in planned

    # --abandon: the gated host is undrained now; the failed one is listed as staying
    # drained, and the new rollout runs it again (its gate passes now) and undrains it.
    lab.exec(bad, "rm /var/tmp/abandon/badgate")
    proc, doc = site.apply("--abandon")
    assert proc.returncode == 0, proc.stderr
    abandoned = doc["abandoned"]
    assert abandoned["rollout_id"] == 1 and killer in abandoned["undrained"]
    assert "it failed" in abandoned["still_drained"][bad]
    assert "next apply runs it again" in abandoned["still_drained"][bad]
    assert f"stays drained: {bad}" in proc.stderr
    report = doc["rollout"]
    assert report["rollout_id"] == 2 and report["status"] == "completed"
    assert bad in report["done"] and killer in report["skipped"] and canary in report["skipped"]
    assert undrained(site).count(killer) == 1 and undrained(site).count(bad) == 1
    status = site.run("rollout", "history", str(site.inventory))
    assert status.returncode == 0 and "abandoned" in status.stdout, status.stdout

    # Nothing drained is left: the next apply is a no-op.
    proc, doc = site.apply()
    assert proc.returncode == 0 and doc["summary"]["status"] == "up-to-date", proc.stderr


def test_two_concurrent_applies_never_both_change_the_mirror(lab, tmp_path: Path):
    site = Site(lab, tmp_path, "twoapply", {"canary": 1, "waves": ["100%"]}, mirror=True)
    [mirror] = [n for n in site.names if n not in site.gpu]
    # On the mirror host, `mokutil` (read by the one-round-trip fact of every apply) waits
    # for a go file: both applies are held inside their dry runs, then let go together.
    calls, go = "/var/tmp/twoapply-mokutil.calls", "/var/tmp/twoapply-go"
    lab.exec(mirror, f"rm -f {calls} {go}; cat > /usr/local/bin/mokutil <<'EOF'\n"
             f"#!/bin/sh\necho $$ >> {calls}\n"
             f"i=0; while [ ! -e {go} ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done\n"
             "echo 'SecureBoot disabled'\nEOF\nchmod +x /usr/local/bin/mokutil")  # fmt: skip
    argv = [sys.executable, "-m", "gpuprov.cli", "apply", str(site.inventory), "--yes"]
    procs = [
        subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=tmp_path,
        )  # fmt: skip
        for _ in range(2)
    ]
    try:
        wait_for(lambda: len(lab.exec(mirror, f"cat {calls}", check=False).stdout.split()) == 2)
        assert site.identity_mtime(mirror) is None  # both in their dry runs: nothing changed
        assert not site.db.exists()  # and no state written yet
        lab.exec(mirror, f"touch {go}")
        outs = [p.communicate(timeout=240)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
        lab.exec(mirror, f"rm -f /usr/local/bin/mokutil {go}", check=False)
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 5], outs
    winner, loser = (0, 1) if procs[0].returncode == 0 else (1, 0)
    # The loser stopped at the lock, before its first change, naming the winner.
    assert f"pid {procs[winner].pid}" in outs[loser], outs[loser]
    assert "Infrastructure hosts first" in outs[winner]
    assert "Infrastructure hosts first" not in outs[loser], outs[loser]
    assert site.identity_mtime(mirror) is not None
