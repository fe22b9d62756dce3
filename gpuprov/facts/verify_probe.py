"""What only `gpuprov verify` needs beside HostState, in one command: `dcgmi diag -r 1`,
the CDI spec, the GPU topology matrix, and a container started with a GPU through CDI when the host has a test image
(host var `gpuprov_verify_image`, an image in the site registry)."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from pyinfra.api import FactBase

from gpuprov.facts.host_state import section_command, split_sections
from gpuprov.paths import CDI_SPEC

_LIBCUDA = re.compile(r"libcuda\.so\.(\d+\.\d+(?:\.\d+)?)")


@dataclass
class ProbeData:
    dcgm_rc: int | None = None  # None: dcgmi not installed
    dcgm_output: str = ""
    cdi_spec: str | None = None  # the spec's text, None when absent
    container_rc: int | None = None  # None: not attempted
    container_output: str = ""
    container_how: str = ""
    topology_rc: int | None = None  # `nvidia-smi topo -m`; None: not read or no nvidia-smi
    topology: str = ""

    @property
    def cdi_driver(self) -> str | None:
        m = _LIBCUDA.search(self.cdi_spec or "")
        return m.group(1) if m else None


class VerifyProbe(FactBase[ProbeData]):
    """DCGM diag level 1, the CDI spec, the GPU interconnect (`nvidia-smi topo -m`), and
    (given an image) a CDI GPU container."""

    def command(
        self,
        runtime: str = "none",
        image: str | None = None,
        plain_http: bool = False,
        ca_file: str | None = None,
    ) -> str:
        parts = [
            section_command(
                "dcgm",
                "if command -v dcgmi >/dev/null 2>&1; then dcgmi diag -r 1; else exit 127; fi",
            ),
            section_command("cdi", f"if [ -f {CDI_SPEC} ]; then cat {CDI_SPEC}; else exit 127; fi"),
            section_command(
                "topo",
                "if command -v nvidia-smi >/dev/null 2>&1; then nvidia-smi topo -m; else exit 127; fi",
            ),
        ]
        if image and runtime in ("docker", "podman", "containerd"):
            img = shlex.quote(image)
            if runtime in ("docker", "podman"):
                # docker and podman read the registry's scheme and CA from their own
                # configuration (daemon.json, /etc/docker/certs.d; registries.conf.d),
                # which mirror_client writes. No network: nvidia-smi needs none, and a
                # bridge per run is slow on small hosts.
                run = (
                    f"{runtime} run --rm --network=none --device nvidia.com/gpu=all {img} "
                    "nvidia-smi -L"
                )
            else:
                # ctr has no such configuration: plain HTTP only where the inventory says
                # the registry is http, the site CA where it names one, TLS verified always
                # (gpuprov.verify.node.container_gate_args decides which).
                pull = "ctr image pull"
                if plain_http:
                    pull += " --plain-http"
                elif ca_file:
                    pull += f" --tlscacert {shlex.quote(ca_file)}"
                run = (
                    f"{pull} {img} >/dev/null && "
                    f"ctr run --rm --device nvidia.com/gpu=all {img} gpuprov-verify-$$ "
                    "nvidia-smi -L"
                )
            parts.append(section_command("container", f"echo {shlex.quote(run)}; {run}"))
        return "; ".join(parts) + "; true"

    def process(self, output: list[str]) -> ProbeData:
        s = split_sections("\n".join(output))
        probe = ProbeData()
        if (d := s.get("dcgm")) and d.present:
            probe.dcgm_rc, probe.dcgm_output = d.rc, d.output
        if (c := s.get("cdi")) and c.present:
            probe.cdi_spec = c.output
        if (t := s.get("topo")) and t.present:
            probe.topology_rc, probe.topology = t.rc, t.output
        if (k := s.get("container")) is not None:
            how, _, rest = k.output.partition("\n")
            probe.container_rc, probe.container_how, probe.container_output = k.rc, how, rest
        return probe
