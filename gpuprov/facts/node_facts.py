"""Everything one apply compares against, in one SSH round trip per host.

HostState (the host's OS, hardware, packages, services...), DeployExtras (digests of the
files the deploys manage, the CDI spec's driver, the runtimes' nvidia registration) and
the identity file preflight writes, as one shell command. Preflight and the GPU stack
share the one answer (`read_node_facts`), so a no-op apply of a converged host costs one
fact round trip (docs/engine.md, "One round trip per converged host").
"""

from __future__ import annotations

import re
import weakref
from dataclasses import dataclass

from pyinfra import host
from pyinfra.api import FactBase

from gpuprov.facts import mirror_state
from gpuprov.facts.files import DeployExtras, FileStat, FileState
from gpuprov.facts.host_state import (
    SCRIPT,
    HostStateData,
    parse_host_state,
    section_command,
    split_sections,
)
from gpuprov.facts.mirror_state import MirrorStateData
from gpuprov.facts.scratch_root import root_prefix
from gpuprov.paths import CDI_SPEC, IDENTITY_FILE, MANAGED_PATHS, MIRROR_MANAGED_PATHS


@dataclass
class NodeFactsData:
    state: HostStateData
    extras: dict
    identity: FileStat | None  # the identity file preflight writes
    mirror: MirrorStateData | None = None  # mirror hosts only (deploys/mirror_server.py)
    # How long the script ran on the host, by the host's clock (None: no `date +%s%N`).
    script_seconds: float | None = None


# The script's first and last `date +%s%N` (nanoseconds since the epoch), GNU date's
# format; anything else (a date without %N prints "...N") reads as unknown.
_RUNTIME = re.compile(r"(?P<start>\d{1,20}) (?P<end>\d{1,20})")
_START = "_gpuprov_t0=$(date +%s%N 2>/dev/null)"
_RUNTIME_SECTION = 'printf \'%s %s\' "$_gpuprov_t0" "$(date +%s%N 2>/dev/null)"'


def parse_runtime(text: str) -> float | None:
    """Seconds between the two stamps of the runtime section, None when not both read."""
    m = _RUNTIME.fullmatch(text.strip())
    if m is None or int(m["end"]) < int(m["start"]):
        return None
    return (int(m["end"]) - int(m["start"])) / 1e9


class NodeFacts(FactBase[NodeFactsData]):
    """HostState + DeployExtras + the identity file's mode and digest, one command, and
    how long it ran on the host (`--timings`: the round trip's host-side share)."""

    def command(
        self, paths: tuple[str, ...], cdi_spec: str, identity_file: str, mirror: bool = False
    ) -> str:

        script = SCRIPT.rstrip()
        script = script.removesuffix("exit 0").rstrip()  # the sections below follow it
        extras = DeployExtras().command(paths=paths, cdi_spec=cdi_spec)
        identity = FileState().command(path=identity_file)
        return "\n".join(
            [
                _START,
                script,
                section_command("extras", extras, "2>/dev/null"),
                section_command("identity", identity, "2>/dev/null"),
                *(
                    [section_command("mirror", mirror_state.command(), "2>/dev/null")]
                    if mirror
                    else []
                ),
                section_command("runtime", _RUNTIME_SECTION, "2>/dev/null"),
                "exit 0",
            ]
        )

    def process(self, output: list[str]) -> NodeFactsData:

        text = "\n".join(output)
        sections = split_sections(text)
        extras = sections.get("extras")
        identity = sections.get("identity")
        mirror = sections.get("mirror")
        runtime = sections.get("runtime")
        return NodeFactsData(
            state=parse_host_state(text),
            extras=DeployExtras().process(extras.output.splitlines() if extras else []),
            identity=FileState().process(identity.output.splitlines() if identity else []),
            mirror=mirror_state.parse(mirror.output) if mirror else None,
            script_seconds=parse_runtime(runtime.output) if runtime else None,
        )


HOST_DATA_KEY = "gpuprov_host"  # gpuprov.engine.connect.HOST_DATA_KEY (facts never import it)

_read: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def read_node_facts() -> NodeFactsData:
    """The current host's NodeFacts, read once per pyinfra State (each wave builds a fresh
    State, with fresh Host objects, so a later wave never sees an earlier wave's answer)."""
    from pyinfra.context import ctx_host

    me = ctx_host.get()
    data = _read.get(me)
    if data is None:
        root = root_prefix(host)
        me_host = host.data.get(HOST_DATA_KEY)
        # The mirror host's state rides along (no second round trip); not on a scratch root.
        mirror = me_host is not None and me_host.role == "mirror" and not root
        data = host.get_fact(
            NodeFacts,
            paths=tuple(MANAGED_PATHS) + (MIRROR_MANAGED_PATHS if mirror else ()),
            mirror=mirror,
            cdi_spec=CDI_SPEC,
            identity_file=f"{root}{IDENTITY_FILE}",
        )
        _read[me] = data
    return data
