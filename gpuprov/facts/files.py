"""Files on the host: one file's mode and digest, many files' digests in one command, and
what the deploys compare against beyond HostState (DeployExtras).

The deploys read DeployExtras once per host (inside NodeFacts) and hand the digests to the
operations; `FileState` is what `managed_file` falls back to when nobody passed them.
"""

from __future__ import annotations

import base64
import shlex
from typing import TypedDict

from pyinfra.api import FactBase

from gpuprov.paths import DOCKER_MIRROR_RECORD


class FileDigests(FactBase[dict[str, str | None]]):
    """sha256 of each file in `paths` (None when absent), in one command."""

    default = dict

    def command(self, paths: tuple[str, ...] | list[str]) -> str:
        quoted = " ".join(shlex.quote(p) for p in paths)
        return (
            f'for f in {quoted}; do if [ -f "$f" ]; then '
            'printf "%s %s\\n" "$(sha256sum < "$f" | cut -d" " -f1)" "$f"; '
            'else printf -- "- %s\\n" "$f"; fi; done'
        )

    def process(self, output: list[str]) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for line in output:
            digest, _, path = line.strip().partition(" ")
            if path:
                out[path] = None if digest == "-" else digest
        return out


class FileStat(TypedDict):
    mode: str  # octal, "644"
    sha256: str


class FileState(FactBase[FileStat | None]):
    """Mode and sha256 of one regular file; None when it does not exist."""

    def command(self, path: str) -> str:
        q = shlex.quote(path)
        return (
            f"if [ -f {q} ]; then stat -c %a {q} && sha256sum < {q} | cut -d' ' -f1; "
            "else echo absent; fi"
        )

    def process(self, output: list[str]) -> FileStat | None:  # type: ignore[override]
        if len(output) < 2 or output[0].strip() == "absent":
            return None
        return FileStat(mode=output[0].strip(), sha256=output[1].strip())


def digests_command(paths: tuple[str, ...] | list[str]) -> str:
    """`file SHA256 PATH` per present regular file, `file - PATH` per other, by one
    `sha256sum` for all: a `$(sha256sum < f | cut)` per file was three processes each,
    7.3 s of a GPU host's 16 s script under software emulation (docs/performance.md).
    Changes the positional parameters: run it in its own shell (NodeFacts' sections are)."""
    quoted = " ".join(shlex.quote(p) for p in paths)
    return (
        f'set --; for f in {quoted}; do if [ -f "$f" ]; then set -- "$@" "$f"; '
        'else printf "file - %s\\n" "$f"; fi; done; '
        # GNU's "DIGEST  PATH" (" *PATH" in binary mode); a name it would escape (a
        # backslash or newline in it) prints no line, and reads as absent.
        'if [ $# -gt 0 ]; then sha256sum -- "$@" 2>/dev/null '
        "| sed -n 's/^\\([0-9a-f]\\{64\\}\\) [ *]/file \\1 /p'; fi"
    )


class DeployExtras(FactBase[dict]):
    """What the deploys compare against beyond HostState, in one command: digests of the
    files they manage, the driver version the CDI spec was generated for, and whether
    docker/containerd already know the nvidia runtime."""

    default = dict

    def command(
        self, paths: tuple[str, ...] | list[str], cdi_spec: str = "/etc/cdi/nvidia.yaml"
    ) -> str:
        spec = shlex.quote(cdi_spec)
        record = shlex.quote(DOCKER_MIRROR_RECORD)
        return (
            f"{digests_command(paths)}; "
            # The spec mounts libcuda.so.<driver version> (libcuda.so.1 is only a link name).
            f"if [ -f {spec} ]; then printf 'cdi %s\\n' \"$(sed -n "
            f"'s/.*libcuda[.]so[.]\\([0-9][0-9]*[.][0-9][0-9.]*[0-9]\\).*/\\1/p' {spec} "
            '| head -n1)"; fi; '
            "if [ -f /etc/docker/daemon.json ] && grep -q '\"nvidia\"' /etc/docker/daemon.json; "
            "then echo 'docker-nvidia yes'; fi; "
            # docker's settings, whole: the mirror client merges into them.
            "if [ -f /etc/docker/daemon.json ]; then "
            "printf 'docker-daemon %s\\n' \"$(base64 -w0 < /etc/docker/daemon.json)\"; fi; "
            # What the mirror client added to it (bounded: it is ours, but read from the host).
            f"if [ -f {record} ]; then printf 'docker-mirror %s\\n' "
            f'"$(head -c 65536 {record} | base64 -w0)"; fi; '
            # pam_env's file, whole (bounded): the mirror client sets HF_ENDPOINT in it.
            "if [ -f /etc/environment ]; then "
            "printf 'environment %s\\n' \"$(head -c 65536 /etc/environment | base64 -w0)\"; fi; "
            "if [ -f /etc/containerd/conf.d/99-nvidia.toml ] && [ -f /etc/containerd/config.toml ] "
            "&& grep -q '^imports.*conf\\.d' /etc/containerd/config.toml; "
            "then echo 'containerd-nvidia yes'; fi; true"
        )

    def process(self, output: list[str]) -> dict:
        out: dict = {
            "digests": {},
            "cdi_driver": None,
            "docker_nvidia": False,
            "containerd_nvidia": False,
            "docker_daemon": None,
            "docker_mirror": None,
            "environment": None,
        }
        for line in output:
            kind, _, rest = line.strip().partition(" ")
            if kind == "file":
                digest, _, path = rest.partition(" ")
                out["digests"][path] = None if digest == "-" else digest
            elif kind == "cdi":
                out["cdi_driver"] = rest.strip() or None
            elif kind == "docker-nvidia":
                out["docker_nvidia"] = True
            elif kind == "docker-daemon":
                out["docker_daemon"] = base64.b64decode(rest.strip()).decode(errors="replace")
            elif kind == "docker-mirror":
                try:  # a damaged record is refused by the mirror client, naming the file
                    out["docker_mirror"] = base64.b64decode(rest.strip()).decode(errors="replace")
                except ValueError:
                    out["docker_mirror"] = ""
            elif kind == "environment":
                out["environment"] = base64.b64decode(rest.strip()).decode(errors="replace")
            elif kind == "containerd-nvidia":
                out["containerd_nvidia"] = True
        return out
