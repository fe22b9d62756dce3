"""No inventory string value reaches a shell unquoted (issue 13, "Also").

Hypothesis puts hostile strings into every string field an inventory carries (names,
address, ssh settings, domains, free and gpuprov_* host vars, mirror client URLs...),
one field at a time. Either the loader refuses the file (a located InputError), or every
shell command gpuprov would build from the loaded values is run by a real /bin/sh (dash)
and must not create the marker file the payloads write:
- drain/undrain hook commands (local `sh -c`, and the remote command of the SSH runner,
  whose argv must also keep `user@address` one word after `--`),
- command gates as the host runs them (`timeout N sh -c '...'` in the GateCommand fact),
- the verify probe's container command (gpuprov_verify_image),
- the profile.d and environment.d files for HF_ENDPOINT, sourced by sh,
- every shell command the GPU stack deploys plan for the host (pyinfra's @fake
  connector, a fresh Debian 12 host): run, as root, by a dash chrooted into an empty
  folder, so no real program runs and nothing outside that folder can change.

The payloads use only shell syntax (`>MARK`, `$(...)`, backquotes, `;`, newlines,
quotes, `${IFS}`), so they would create MARK even in the empty chroot if a value were
ever parsed as code.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gpuprov.errors import InputError
from gpuprov.inventory.loader import load_inventory

sys.path.insert(0, str(Path(__file__).parents[2] / "deploys"))

SETTINGS = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
PAYLOADS = [
    "$(>MARK)", "`>MARK`", ";>MARK", "\n>MARK", "|>MARK", "&>MARK", "&&>MARK", "'$(>MARK)'",
    '"$(>MARK)"', "';>MARK;'", '";>MARK;"', "${IFS}>MARK", "\\;>MARK", "\r>MARK", "$((0))>MARK",
    "-oProxyCommand=>MARK", " ", "\t", "'", '"', "\\", "%h", "{host}", "#", "*", "~", "=",
]  # fmt: skip
PREFIXES = ["", "g", "10.0.0.9", "http://m:8090", "http://m:8090/", "/srv/", "reg:5000/img:", "1."]
values = st.builds(
    lambda prefix, parts: prefix + "".join(parts),
    st.sampled_from(PREFIXES),
    st.lists(st.one_of(st.sampled_from(PAYLOADS), st.text("abz09.-_:/", max_size=4)), min_size=1, max_size=3),
)  # fmt: skip

BASE: dict = {
    "cluster": {
        "name": "t",
        "stack": {"os": "debian12", "driver": {"branch": "580", "version": "580.95.05"}, "cuda": ["12.8"]},
        "mirror": {"host": "mirror01"},
        "ssh": {"user": "ops", "sudo": True},
        "rollout": {"drain": "echo {host} {address}", "gates": [{"command": "echo {host}"}]},
    },
    "groups": {
        "gpu": {
            "profile": "hgx-h100-8",
            "vars": {
                "note": "free text",
                "gpuprov_root": "/srv/root",
                "gpuprov_verify_image": "reg:5000/nvidia/cuda:12.8.0-base",
                "gpuprov_dcgm_version": "1:4.4.1-1",
                "gpuprov_mirror_client": {
                    "apt_url": "http://10.0.0.5:8080", "suite": "gpuprov", "keyring": "KEYRING",
                    "components": ["main"], "registry": "10.0.0.5:5000", "registry_scheme": "http",
                    "hf_endpoint": "http://10.0.0.5:8090",
                },
            },
            "hosts": {
                "g1": {
                    "address": "10.0.0.1", "rack": "r1", "domains": {"nvl": "n1"},
                    "ssh": {"user": "ops2", "sudo_password_env": "PW", "key": "id"},
                    "vars": {"note2": "x"},
                },
            },
        },
        "mirror": {"role": "mirror", "hosts": {"mirror01": {"address": "10.0.0.5"}}},
    },
}  # fmt: skip


def _set(path: tuple, value: str):
    def put(doc: dict) -> None:
        node = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return put


def _rename(path: tuple, old: str):
    def put(doc: dict, value: str) -> None:
        node = doc
        for key in path:
            node = node[key]
        node[value] = node.pop(old)

    return put


G1 = ("groups", "gpu", "hosts", "g1")
MC = ("groups", "gpu", "vars", "gpuprov_mirror_client")
FIELDS = {
    "cluster.name": ("cluster", "name"),
    "cluster.ssh.user": ("cluster", "ssh", "user"),
    "host.address": (*G1, "address"),
    "host.rack": (*G1, "rack"),
    "host.domains.nvl": (*G1, "domains", "nvl"),
    "host.ssh.user": (*G1, "ssh", "user"),
    "host.ssh.key": (*G1, "ssh", "key"),
    "host.ssh.sudo_password_env": (*G1, "ssh", "sudo_password_env"),
    "cluster.ssh.known_hosts": ("cluster", "ssh", "known_hosts"),
    "host.vars.note2": (*G1, "vars", "note2"),
    "group.vars.note": ("groups", "gpu", "vars", "note"),
    "gpuprov_root": ("groups", "gpu", "vars", "gpuprov_root"),
    "gpuprov_verify_image": ("groups", "gpu", "vars", "gpuprov_verify_image"),
    "gpuprov_dcgm_version": ("groups", "gpu", "vars", "gpuprov_dcgm_version"),
    "mirror_client.apt_url": (*MC, "apt_url"),
    "mirror_client.hf_endpoint": (*MC, "hf_endpoint"),
    "mirror_client.suite": (*MC, "suite"),
    "mirror_client.registry": (*MC, "registry"),
    "mirror_client.registry_scheme": (*MC, "registry_scheme"),
    "stack.driver.version": ("cluster", "stack", "driver", "version"),
    "rollout.failure_domain": ("cluster", "rollout", "failure_domain"),
}
RENAMES = {
    "host name": (("groups", "gpu", "hosts"), "g1"),
    "group name": (("groups",), "gpu"),
    "domains key": ((*G1, "domains"), "nvl"),
    "host vars key": ((*G1, "vars"), "note2"),
}
CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"
HOOKS = ["echo {host} {address}", "printf '%s\\n' {address} | cat", "true && echo x{host}y"]


@pytest.fixture(scope="module")
def jail():
    """An empty folder with dash and its libraries only: `sh -c` there runs no program."""
    if os.geteuid() != 0:
        pytest.skip("the chroot for running planned deploy commands needs root")
    root = Path(tempfile.mkdtemp(prefix="gpuprov-jail-"))
    dash = Path("/usr/bin/dash").resolve()
    libs = subprocess.run(["ldd", str(dash)], capture_output=True, text=True, check=True).stdout
    for path in [str(dash), *(w for w in libs.split() if w.startswith("/"))]:
        dest = root / path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
    (root / "bin").mkdir(exist_ok=True)
    shutil.copy2(dash, root / "bin" / "sh")
    (root / "w").mkdir()
    yield root
    shutil.rmtree(root)


def run_in_jail(jail: Path, command: str) -> None:
    """Run `command` with dash, chrooted into `jail`, cwd /w; MARK must never appear."""
    with contextlib.suppress(subprocess.TimeoutExpired):  # a wait loop without `sleep`
        subprocess.run(
            [CHROOT, str(jail), "/bin/sh", "-c", f"cd /w && {{\n{command}\n}}"],
            env={"PATH": "/nonexistent"}, capture_output=True, timeout=5,
        )  # fmt: skip
    marks = list((jail / "w").iterdir())
    for mark in marks:  # clean for the next example (hypothesis shrinks after a failure)
        mark.unlink()
    assert not marks, f"a value ran as shell code: {command!r}"


def shell_commands(cluster, jail: Path, keyring: Path) -> list[str]:
    """Every shell command gpuprov builds from this inventory's values."""
    from gpuprov.facts.gate import GateCommand
    from gpuprov.facts.verify_probe import VerifyProbe
    from gpuprov.inventory.model import CommandGate
    from gpuprov.rendering import render
    from gpuprov.rollout.hooks import LocalHookRunner, SSHHookRunner
    from gpuprov.rollout.hooks import render as hook_render

    out: list[str] = []
    for host in cluster.hosts.values():
        for template in HOOKS:
            command = hook_render(template, host)
            argv = LocalHookRunner().argv(command)
            out.append(command if argv[0] == "/bin/sh" else " ".join(map(_q, argv)))
            ssh = SSHHookRunner(host, cluster.known_hosts_path).argv(command)
            dash = ssh.index("--")
            assert ssh[dash + 1] == f"{host.ssh.user}@{host.address}" and len(ssh) == dash + 3
            assert not ssh[dash + 1].startswith("-")
            out.append(ssh[-1])  # what the remote shell parses
        for gate in cluster.rollout.gates:
            if isinstance(gate, CommandGate):
                out.append(GateCommand().command(hook_render(gate.command, host), gate.timeout))
        image = host.vars.get("gpuprov_verify_image")
        out.append(VerifyProbe().command(runtime="containerd", image=image))
        mc = host.vars.get("gpuprov_mirror_client") or {}
        if mc.get("hf_endpoint"):
            for name in ("hf-mirror.sh.j2", "hf-mirror.conf.j2"):
                out.append(render(name, hf_endpoint=mc["hf_endpoint"]))
        if host.role == "gpu":
            out += planned_commands(host, keyring)
    return out


def planned_commands(host, keyring: Path) -> list[str]:
    from hoststate import host_state_output
    from plan_harness import plan

    data = {k: v for k, v in host.vars.items() if k != "gpuprov_mirror_client"}
    mc = dict(host.vars.get("gpuprov_mirror_client") or {})
    if mc:
        mc["keyring"] = str(keyring)  # a control-node path, read here, never in a shell
        data["gpuprov_mirror_client"] = mc
    ops = plan(host, host_state_output("debian12"), **data)
    return [c for op in ops for c in op.commands if not c.startswith("<")]


def _q(word: str) -> str:
    import shlex

    return shlex.quote(word)


def load_with(doc: dict, tmp: Path):
    path = tmp / "inv.yaml"
    path.write_text(json.dumps(doc), encoding="utf-8")  # JSON is YAML
    try:
        return load_inventory(path)
    except InputError as exc:
        if doc == BASE:
            raise
        assert exc.problems and all(p.location.file == str(path) for p in exc.problems)
        return None


@SETTINGS
@given(field=st.sampled_from(sorted(FIELDS) + sorted(RENAMES)), value=values)
def test_no_inventory_value_runs_as_shell_code(jail, field, value):
    doc = copy.deepcopy(BASE)
    if field in FIELDS:
        _set(FIELDS[field], value)(doc)
    else:
        _rename(*RENAMES[field])(doc, value)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        keyring = tmp / "k.gpg"
        keyring.write_bytes(b"keyring")
        cluster = load_with(doc, tmp)
        event(f"{field}: {'refused' if cluster is None else 'loaded'}")
        if cluster is None:
            return  # refused at the edge, with a location
        for command in shell_commands(cluster, jail, keyring):
            run_in_jail(jail, command)


def test_the_jail_would_see_an_unquoted_payload(jail):
    """The check can fail: an unquoted payload does create the marker."""
    with pytest.raises(AssertionError, match="ran as shell code"):
        run_in_jail(jail, "echo http://m:8090;>MARK")
    run_in_jail(jail, "echo 'http://m:8090;>MARK'")  # and the jail is clean again


def test_base_inventory_loads_and_builds_commands(jail, tmp_path):
    keyring = tmp_path / "k.gpg"
    keyring.write_bytes(b"keyring")
    cluster = load_with(copy.deepcopy(BASE), tmp_path)
    assert cluster is not None
    commands = shell_commands(cluster, jail, keyring)
    assert len(commands) > 20  # hooks, gates, probe, env files and the planned deploys
    for command in commands:
        run_in_jail(jail, command)
