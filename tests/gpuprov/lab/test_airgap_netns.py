"""LAB (marker host): the lab's air gap, rebuilt in network namespaces with the real tools:
the control node's nftables table (gpuprov.lab.airgap.ruleset, applied by `nft -f`) and the
probe script `make demo` runs on a GPU VM, judged by parse_probes.

Namespaces: `ctl` (the control node, holds the table and a listener), `gpu` (a GPU VM: no
default route, one link to ctl, one to the mirror) and `mir` (mirror01, "sshd" on port 22).
The same probes run once before the cut (the control node's listener answers: the test can
fail) and once after (only the mirror answers), and the control node still reaches the GPU
host (SSH's direction) through the table."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from gpuprov.lab import airgap

pytestmark = pytest.mark.host

for tool in ("ip", "nft", "curl", "bash"):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} not installed", allow_module_level=True)

TAG = f"{os.getpid() % 100000}"
NS = {"ctl": f"agctl{TAG}", "gpu": f"aggpu{TAG}", "mir": f"agmir{TAG}"}
CTL, GPU_CTL, GPU_MIR, MIR = "10.231.0.1", "10.231.0.2", "10.231.1.2", "10.231.1.10"
PORT = 18080


def _ip(*args: str, ns: str | None = None) -> None:
    cmd = ["ip", *(["-n", ns] if ns else []), *args]
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)


def _in(ns: str, *cmd: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True,
                          timeout=kw.pop("timeout", 120), check=False, **kw)  # fmt: skip


def _listen(ns: str, address: str, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "http.server", "--bind", address,
         str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/tmp",
    )  # fmt: skip
    for _ in range(100):
        probe = f"exec 3<>/dev/tcp/{address}/{port}"
        if _in(ns, "bash", "-c", probe, timeout=10).returncode == 0:
            return proc
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"no listener on {address}:{port} in {ns}")


@pytest.fixture(scope="module")
def net() -> Iterator[None]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for ns in NS.values():
            _ip("netns", "add", ns)
            _ip("link", "set", "lo", "up", ns=ns)
        _ip("link", "add", f"agc{TAG}", "netns", NS["ctl"], "type", "veth", "peer", "name",
            f"agg{TAG}", "netns", NS["gpu"])  # fmt: skip
        _ip("link", "add", f"agm{TAG}", "netns", NS["mir"], "type", "veth", "peer", "name",
            f"agh{TAG}", "netns", NS["gpu"])  # fmt: skip
        for ns, dev, addr in ((NS["ctl"], f"agc{TAG}", CTL), (NS["gpu"], f"agg{TAG}", GPU_CTL),
                              (NS["gpu"], f"agh{TAG}", GPU_MIR), (NS["mir"], f"agm{TAG}", MIR)):  # fmt: skip
            _ip("addr", "add", f"{addr}/24", "dev", dev, ns=ns)
            _ip("link", "set", dev, "up", ns=ns)
        procs = [_listen(NS["ctl"], CTL, PORT), _listen(NS["mir"], MIR, 22),
                 _listen(NS["gpu"], GPU_CTL, PORT)]  # fmt: skip
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait(timeout=10)
        for ns in NS.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def _probes() -> dict[str, airgap.Probe]:
    return _timed_probes()[0]


def _timed_probes() -> tuple[dict[str, airgap.Probe], float]:
    url = f"http://{CTL}:{PORT}/"
    start = time.monotonic()
    out = _in(NS["gpu"], "bash", "-s", input=airgap.probe_script(MIR, url, url), timeout=180)
    took = time.monotonic() - start
    return {p.what: p for p in airgap.parse_probes(out.stdout)}, took


def test_only_the_mirror_is_reachable_after_the_cut(net: None) -> None:
    before = _probes()
    unreachable = "the control node's lab address is unreachable"
    assert not before[unreachable].ok, before  # no table yet: the listener answers
    assert before["no default route"].ok and before["mirror01 is reachable (its sshd answers)"].ok

    table = "gpuprov_airgap_test"
    applied = _in(NS["ctl"], "nft", "-f", "-", input=airgap.ruleset(table, [GPU_CTL], [MIR]))
    assert applied.returncode == 0, applied.stderr
    after, took = _timed_probes()
    assert [p for p in after.values() if not p.ok] == []
    assert "exit 28" in after[unreachable].detail  # curl's timeout: dropped, not refused
    assert "exit 28" in after["the control node's management address is unreachable"].detail
    # The two dropped fetches time out at once (8 s each; one after the other was 16 s+).
    assert took < 14, f"the probes took {took:.1f} s: run one after the other?"

    # SSH's direction still works: the control node opens, the replies come back.
    back = _in(
        NS["ctl"], "curl", "-fsS", "-m", "10", "-o", "/dev/null", f"http://{GPU_CTL}:{PORT}/"
    )
    assert back.returncode == 0, back.stderr
    listed = _in(NS["ctl"], "nft", "list", "table", "inet", table)
    assert "drop" in listed.stdout and GPU_CTL in listed.stdout


def test_parse_probes_reports_a_missing_probe_as_failed() -> None:
    probes = airgap.parse_probes("default_route 0 \nmirror 0 \n")
    by = {p.what: p for p in probes}
    assert by["no default route"].ok
    assert not by["no route to an internet address"].ok
    assert by["no route to an internet address"].detail == "probe did not run"
