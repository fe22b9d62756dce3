"""`gpuprov verify`: is a GPU node what its inventory says, right now?

One extra fact (`gpuprov.facts.verify_probe.VerifyProbe`) beside HostState runs what only verification needs:
`dcgmi diag -r 1`, the driver version the CDI spec names, and a container started with a
GPU through CDI when the host has a test image (host var `gpuprov_verify_image`, an image
in the site registry). `node_verdict` turns both into checks on top of gpuprov.verify.verdicts'
(nvidia-smi, count, model, driver, ECC, remapped rows, fabric): PCI bus vs profile,
fabric manager version == driver, CDI spec current, DCGM, container. What could not be
checked is reported as *not checked* with the reason, never as passed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gpuprov.facts.host_state import HostStateData
from gpuprov.facts.verify_probe import ProbeData, VerifyProbe
from gpuprov.inventory.mirrors import MIRROR_CHOICE_KEY, MirrorChoice
from gpuprov.inventory.model import Host
from gpuprov.parsers import ParseError
from gpuprov.parsers.dcgmi_diag import parse_dcgmi_diag
from gpuprov.parsers.gpu_list import parse_gpu_list
from gpuprov.parsers.topo import parse_topo_matrix
from gpuprov.paths import CDI_SPEC
from gpuprov.tables import SystemProfile, get_profile, packages_for
from gpuprov.verify.verdicts import Check, HostVerdict, nvlink_topology, pci_checks, verdict

_FABRICMANAGER = re.compile(r"nvidia-fabricmanager(-\d+)?")


@dataclass
class NodeReport:
    host: str
    verdict: HostVerdict
    not_checked: list[tuple[str, str]] = field(default_factory=list)  # (check, why)

    @property
    def ok(self) -> bool:
        return self.verdict.ok

    def as_dict(self) -> dict:
        return {
            "host": self.host,
            "ok": self.ok,
            "checks": [
                {"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.verdict.checks
            ],
            "not_checked": [{"name": n, "why": w} for n, w in self.not_checked],
        }


def node_verdict(me: Host, state: HostStateData, probe: ProbeData) -> NodeReport:
    if me.stack is None or me.profile is None:
        v = HostVerdict([Check("inventory", False, "not a GPU host with a profile and stack")])
        return NodeReport(me.name, v)
    profile = get_profile(me.profile)
    expected = me.stack.driver.version
    report = NodeReport(me.name, HostVerdict())
    dcgm = None
    if probe.dcgm_rc is None:
        if me.stack.dcgm:
            report.verdict.checks.append(Check("dcgm-diag", False, "dcgmi is not installed"))
        else:
            report.not_checked.append(("dcgm-diag", "dcgm: false in the stack"))
    else:
        try:
            dcgm = parse_dcgmi_diag(probe.dcgm_output)
        except ParseError:
            first = (probe.dcgm_output.strip().splitlines() or ["no output"])[0]
            report.verdict.checks.append(
                Check("dcgm-diag", False, f"dcgmi diag -r 1 failed (exit {probe.dcgm_rc}): {first}")
            )
    base = verdict(state, profile, expected, dcgm)
    report.verdict.checks = pci_checks(state, profile) + base.checks + report.verdict.checks
    if profile.nvswitch:
        report.verdict.checks.append(_fabricmanager_version(state, me, expected))
        if probe.topology_rc is not None:  # read (the rollout gates may not read the probe)
            report.verdict.checks.append(_topology(probe, profile))
    report.verdict.checks.append(_cdi(probe, expected))
    _container(report, me, probe, profile)
    return report


def _topology(probe: ProbeData, profile: SystemProfile) -> Check:
    if probe.topology_rc != 0:
        first = (probe.topology.strip().splitlines() or ["no output"])[0]
        return Check("nvlink-topology", False, f"nvidia-smi topo -m failed: {first}")
    try:
        return nvlink_topology(parse_topo_matrix(probe.topology), profile)
    except ParseError as exc:
        return Check("nvlink-topology", False, f"cannot read nvidia-smi topo -m: {exc}")


def _fabricmanager_version(state: HostStateData, me: Host, expected: str) -> Check:
    from gpuprov.checks import resolve_modules

    assert me.stack is not None and me.profile is not None  # node_verdict checked both
    if state.os is None:
        return Check("fabricmanager-version", False, "unknown OS: cannot name the package")
    pkgs = packages_for(
        state.os.os_key,
        me.stack.driver.branch,
        expected,
        resolve_modules(me.stack, get_profile(me.profile)),
    )
    have = state.package_version(pkgs.fabricmanager)
    if have is None:
        # Another branch's package (the name changed at 580) is the usual culprit.
        other = sorted(
            (n, p.version)
            for n, p in state.packages.items()
            if p.installed and _FABRICMANAGER.fullmatch(n) and n != pkgs.fabricmanager
        )
        if other:
            found = ", ".join(f"{n} {v}" for n, v in other)
            return Check(
                "fabricmanager-version",
                False,
                f"{found} installed instead of {pkgs.fabricmanager} for driver {expected} "
                "(the service refuses to start; CUDA fails with error 802)",
            )
        return Check("fabricmanager-version", False, f"{pkgs.fabricmanager} is not installed")
    if have.split("-")[0] != expected:
        return Check(
            "fabricmanager-version",
            False,
            f"{pkgs.fabricmanager} {have} does not match driver {expected} "
            "(the service refuses to start; CUDA fails with error 802)",
        )
    return Check("fabricmanager-version", True, f"{pkgs.fabricmanager} {have}")


def _cdi(probe: ProbeData, expected: str) -> Check:
    if probe.cdi_spec is None:
        return Check("cdi-spec", False, f"no CDI spec at {CDI_SPEC}")
    found = probe.cdi_driver
    if found != expected:
        return Check(
            "cdi-spec",
            False,
            f"{CDI_SPEC} is for driver {found or 'unknown'}, installed {expected}: "
            "regenerate it (nvidia-ctk cdi generate)",
        )
    return Check("cdi-spec", True, f"{CDI_SPEC} is current (driver {expected})")


def _container(report: NodeReport, me: Host, probe: ProbeData, profile: SystemProfile) -> None:
    assert me.stack is not None  # node_verdict checked it
    runtime = me.stack.container_runtime
    if runtime == "none":
        report.not_checked.append(("container", "container_runtime: none"))
    elif probe.container_rc is None:
        report.not_checked.append(
            (
                "container",
                f"no test image (host var gpuprov_verify_image): no {runtime} container was "
                "started; only the CDI spec was checked",
            )
        )
    else:
        report.verdict.checks.append(container_check(runtime, probe, profile))


# Why a GPU container did not start, from what docker/podman/ctr print; first match wins
# (a daemon that does not answer also "cannot pull"). A reason may name what the pattern's
# named groups caught. docker's and podman's messages were captured on the Debian 13
# test-bed VM (tests/fixtures/container/), read by tests/gpuprov/verify/
# test_container_failures.py; ctr's are not captured (no CDI-capable ctr on the test bed).
CONTAINER_FAILURES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), reason)
    for pattern, reason in (
        (
            r"Cannot connect to the Docker daemon|containerd\.sock.*connect|"
            r"unable to connect to Podman",
            "the {runtime} daemon is not running",
        ),
        (
            # Before the next: docker wraps this in "failed to inject CDI devices". The
            # node exists while the driver's modules are loaded (nvidia-modprobe makes it).
            r'failed to stat CDI host device "?(?P<node>/dev/[^"\s:]{1,64})',
            "the CDI spec names a device node the host lacks ({node}): check the driver's "
            "modules are loaded, then regenerate the spec (nvidia-ctk cdi generate)",
        ),
        (
            r"unresolvable CDI devices|CDI device injection failed|failed to inject CDI",
            "the CDI spec has no device nvidia.com/gpu=all (regenerate it: apply, or "
            "nvidia-ctk cdi generate)",
        ),
        (
            r"manifest unknown|not found: manifest|failed to resolve reference|"
            r"pull access denied|initializing source|pinging container registry|"
            r"error pulling image|Error response from daemon: Get \S+/v2/",
            "the image cannot be pulled from the registry",
        ),
        (
            r"error mounting|mount .* no such file or directory|"
            r"(hostPath|host path)\S* .*does not exist",
            "the CDI spec mounts driver files the host does not have (a spec left from "
            "another driver: apply regenerates it)",
        ),
    )
)


def container_check(runtime: str, probe: ProbeData, profile: SystemProfile) -> Check:
    """What a GPU container saw (`nvidia-smi -L` inside it) against the profile, or why it
    did not start."""
    try:
        gpus = parse_gpu_list(probe.container_output)
    except ParseError as exc:
        return Check("container", False, f"`{probe.container_how}`: {exc}")
    if probe.container_rc != 0 or not gpus:
        lines = [ln for ln in probe.container_output.strip().splitlines() if ln.strip()]
        last = lines[-1] if lines else "no output"
        found = (
            (why, m)
            for rx, why in CONTAINER_FAILURES
            if (m := rx.search(probe.container_output)) is not None
        )
        reason, m = next(found, ("the container did not list any GPU", None))
        fields = m.groupdict() if m is not None else {}
        return Check(
            "container",
            False,
            f"{reason.format(runtime=runtime, **fields)}: `{probe.container_how}` exited "
            f"{probe.container_rc}: {last[:200]}",
        )
    names = sorted({g.name for g in gpus})
    seen = f"{len(gpus)} × {', '.join(names)}"
    wrong = [n for n in names if n not in profile.gpu_models]
    if len(gpus) != profile.gpu_count or wrong:
        return Check(
            "container",
            False,
            f"a {runtime} container sees {seen}; profile {profile.name} has "
            f"{profile.gpu_count} × {profile.gpu_model}",
        )
    return Check("container", True, f"{seen} in a {runtime} container (CDI nvidia.com/gpu=all)")


# A registry reference: host[:port]/path[:tag][@sha256:digest] (what ctr and docker take).
_IMAGE = re.compile(
    r"(?P<registry>[A-Za-z0-9.-]+(?::[0-9]{1,5})?)/[a-z0-9]+(?:[._/-][a-z0-9]+)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?P<digest>@sha256:[0-9a-f]{64})?"
)


def container_gate_args(me: Host, choice: MirrorChoice | None = None) -> dict[str, object]:
    """VerifyProbe's container arguments for host `me`: its test image (host var
    `gpuprov_verify_image`, pulled by digest when it names one) and how to reach the
    registry: plain HTTP only when `gpuprov_mirror_client.registry_scheme` is http and the
    image is on that registry; `registry_ca` (a CA file on the host) for an https
    registry with a site CA. Without the var, the registry of the host's nearest mirror
    (`choice`, gpuprov.inventory.mirrors) with the inventory's `cluster.mirror.scheme`. Raises ValueError (the gate then fails, saying why) for an
    image reference that is not one."""
    image = me.vars.get("gpuprov_verify_image")
    runtime = me.stack.container_runtime if me.stack else "none"
    if not image:
        return {"runtime": runtime, "image": None}
    m = _IMAGE.fullmatch(str(image))
    if m is None:
        raise ValueError(
            f"gpuprov_verify_image {image!r} is not an image reference "
            "(registry[:port]/name[:tag][@sha256:<64 hex>])"
        )
    mirror = me.vars.get("gpuprov_mirror_client") or (choice.settings(None) if choice else {})
    on_mirror = isinstance(mirror, dict) and mirror.get("registry") == m.group("registry")
    scheme = mirror.get("registry_scheme", "http") if on_mirror else "https"
    ca = mirror.get("registry_ca") if on_mirror else None
    if ca is not None and not re.fullmatch(r"/[A-Za-z0-9._/-]+", str(ca)):
        raise ValueError(f"gpuprov_mirror_client.registry_ca {ca!r} is not an absolute path")
    return {
        "runtime": runtime,
        "image": str(image),
        "plain_http": scheme == "http",
        "ca_file": str(ca) if ca else None,
    }


def probe_hosts(session, hosts: dict[str, Host]) -> dict[str, ProbeData | str]:
    """VerifyProbe on every connected host in parallel, each with its own runtime and
    test image; a failure is that host's one-line error string."""
    import gevent
    from pyinfra.context import ctx_state

    state = session.state

    def one(name: str) -> ProbeData | str:
        try:
            pyhost = state.inventory.get_host(name)
            args = container_gate_args(hosts[name], pyhost.data.get(MIRROR_CHOICE_KEY))
            return pyhost.get_fact(VerifyProbe, **args)
        except Exception as exc:  # this host's problem only
            lines = str(exc).strip().splitlines()
            return lines[0] if lines else type(exc).__name__

    with ctx_state.use(state):
        greenlets = {n: state.pool.spawn(one, n) for n in session.connected if n in hosts}
        gevent.joinall(list(greenlets.values()))
    return {n: g.get() for n, g in greenlets.items()}
