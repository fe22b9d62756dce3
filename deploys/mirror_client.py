"""Point the host at the site mirror, and only at it (air-gapped sites).

Runbook:
1. apt: /etc/apt/sources.list.d/gpuprov-mirror.sources with Signed-By the mirror's own
   keyring (never `trusted=yes`); `apt-get update` only when either file changed.
2. Hugging Face clients: HF_ENDPOINT and HF_HUB_DISABLE_XET=1 (the mirror speaks the Hub
   HTTP API, not Xet) for systemd sessions (environment.d) and login shells (profile.d).
3. containerd: registry mirrors in /etc/containerd/certs.d/<upstream>/hosts.toml, enabled
   by a drop-in (the user's config.toml is not rewritten). docker: the site registry added
   to `registry-mirrors` (and `insecure-registries` for plain http) in daemon.json, merged
   into the user's settings. docker mirrors Docker Hub only: nvcr.io/ghcr.io images are
   pulled by their site-registry name. Either way the runtime restarts once afterwards.
   podman: a drop-in in /etc/containers/registries.conf.d naming the site registry (and
   as the mirror of docker.io, nvcr.io, ghcr.io); podman has no daemon to restart.

Settings come from the host var `gpuprov_mirror_client` (group or host `vars:` in the
inventory): {"apt_url", "suite", "keyring" (path on the control node), "registry"
("host:port", optional), "hf_endpoint" (optional)}. Without it the steps show as skipped.
"""

from __future__ import annotations

from pathlib import Path

from gpuprov.deploys.context import MIRROR_DATA_KEY, NodeContext
from pyinfra.api import deploy

from gpuprov.operations.apt import deb822_source
from gpuprov.operations.docker import DaemonJsonError, docker_daemon_lists, merge_daemon_json
from gpuprov.operations.files import managed_file, sha256
from gpuprov.operations.system import skipped
from gpuprov.paths import (
    CONTAINERD_CERTS,
    CONTAINERD_REGISTRY,
    HF_ENV,
    HF_PROFILE,
    MIRROR_SOURCE_NAME,
    PODMAN_REGISTRY,
    REGISTRY_UPSTREAMS,
)
from gpuprov.rendering import render
from gpuprov.safe_values import host_port_problem, url_problem

UPSTREAM_SERVERS = {
    "docker.io": "https://registry-1.docker.io",
    "nvcr.io": "https://nvcr.io",
    "ghcr.io": "https://ghcr.io",
}


def mirror_settings(apt_url: str, keyring: Path, suite: str = "gpuprov", **extra) -> dict:
    """The `gpuprov_mirror_client` host var value (for the engine and tests)."""
    return {"apt_url": apt_url, "suite": suite, "keyring": str(keyring), **extra}


def settings_problem(mirror: dict) -> str | None:
    """What is wrong with a `gpuprov_mirror_client` value, or None. The loader checks the
    inventory's copy with its line; this also covers values built in code, because the
    URLs end up in files that every login shell on the host reads."""
    checks = {
        "apt_url": lambda v: url_problem(v, ("http", "https", "file")),
        "hf_endpoint": url_problem,
        "registry": host_port_problem,
        "registry_scheme": lambda v: None if v in ("http", "https") else "expected http or https",
    }
    for key, check in checks.items():
        value = mirror.get(key)
        if value is not None and (not isinstance(value, str) or check(value)):
            why = check(value) if isinstance(value, str) else "expected a string"
            return f"gpuprov_mirror_client.{key} {value!r}: {why}"
    return None


@deploy("Mirror client")
def mirror_client(ctx: NodeContext) -> None:
    mirror = ctx.var(MIRROR_DATA_KEY)
    if not mirror:
        skipped(name="Site mirror", reason="no mirror in the inventory: sources left as they are")
        return
    problem = settings_problem(mirror)
    if problem:
        from gpuprov.engine.refusal import HostRefused

        raise HostRefused(problem, "fix the host's vars in the inventory")
    if ctx.apt:
        deb822_source(
            name="apt source: the site mirror (Signed-By its keyring)",
            source_name=MIRROR_SOURCE_NAME,
            url=mirror["apt_url"],
            suite=mirror.get("suite", "gpuprov"),
            keyring=Path(mirror["keyring"]).read_bytes(),
            components=list(mirror.get("components", ["main"])),
            digests=ctx.digests,
        )
    hf = mirror.get("hf_endpoint")
    if hf:
        managed_file(
            name="HF_ENDPOINT for systemd sessions",
            path=HF_ENV,
            content=render("hf-mirror.conf.j2", hf_endpoint=hf),
            digests=ctx.digests,
        )
        managed_file(
            name="HF_ENDPOINT for login shells",
            path=HF_PROFILE,
            content=render("hf-mirror.sh.j2", hf_endpoint=hf),
            digests=ctx.digests,
        )
    registry = mirror.get("registry")
    scheme = mirror.get("registry_scheme", "http")
    if registry and ctx.stack.container_runtime == "docker":
        lists = {"registry-mirrors": [f"{scheme}://{registry}"]}
        if scheme == "http":
            lists["insecure-registries"] = [registry]
        try:
            merged = merge_daemon_json(ctx.docker_daemon, lists)
        except DaemonJsonError as exc:
            from gpuprov.engine.refusal import HostRefused

            raise HostRefused(str(exc), "fix the file on the host (docker cannot start)") from None
        docker_daemon_lists(
            name="docker: pull Docker Hub images through the site registry",
            lists=lists,
            current=ctx.docker_daemon,
        )
        if merged is not None:
            ctx.docker_daemon = merged
            ctx.runtime_restart = True
    if registry and ctx.stack.container_runtime == "podman":
        # podman is daemonless: the next pull reads the drop-in, nothing restarts.
        managed_file(
            name="podman: pull through the site registry",
            path=PODMAN_REGISTRY,
            content=render(
                "podman-registries.conf.j2",
                registry=registry,
                insecure=scheme == "http",
                upstreams=REGISTRY_UPSTREAMS,
            ),
            digests=ctx.digests,
        )
    if registry and ctx.stack.container_runtime == "containerd":
        dropin = render(
            "containerd-registry.toml.j2",
            version=2,
            plugin="io.containerd.grpc.v1.cri",
            config_path=CONTAINERD_CERTS,
        )
        managed_file(
            name="containerd: registry mirrors from certs.d",
            path=CONTAINERD_REGISTRY,
            content=dropin,
            digests=ctx.digests,
        )
        if ctx.digests.get(CONTAINERD_REGISTRY) != sha256(dropin):
            ctx.runtime_restart = True  # config_path is read at start; hosts.toml live
        for upstream in REGISTRY_UPSTREAMS:
            managed_file(
                name=f"containerd: pull {upstream} from the site registry",
                path=f"{CONTAINERD_CERTS}/{upstream}/hosts.toml",
                content=render(
                    "containerd-hosts.toml.j2",
                    upstream=upstream,
                    server=UPSTREAM_SERVERS[upstream],
                    mirror=f"{scheme}://{registry}",
                ),
                digests=ctx.digests,
            )
