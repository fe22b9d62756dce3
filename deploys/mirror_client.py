"""Point the host at the site mirror, and only at it (air-gapped sites).

Runbook:
1. apt: /etc/apt/sources.list.d/gpuprov-mirror.sources with Signed-By the mirror's own
   keyring (never `trusted=yes`); `apt-get update` only when either file changed.
2. Hugging Face clients: HF_ENDPOINT and HF_HUB_DISABLE_XET=1 (the mirror speaks the Hub
   HTTP API, not Xet) for systemd sessions (environment.d) and login shells (profile.d).
3. containerd: registry mirrors in /etc/containerd/certs.d/<upstream>/hosts.toml, enabled
   by a drop-in (the user's config.toml is not rewritten).

Settings come from the host var `gpuprov_mirror_client` (group or host `vars:` in the
inventory): {"apt_url", "suite", "keyring" (path on the control node), "registry"
("host:port", optional), "hf_endpoint" (optional)}. Without it the steps show as skipped.
"""

from __future__ import annotations

from pathlib import Path

from gpuprov.deploys.context import (
    CONTAINERD_CERTS,
    CONTAINERD_REGISTRY,
    HF_ENV,
    HF_PROFILE,
    MIRROR_DATA_KEY,
    MIRROR_SOURCE_NAME,
    REGISTRY_UPSTREAMS,
    NodeContext,
    render,
)
from pyinfra.api import deploy

from gpuprov.operations.apt import deb822_source
from gpuprov.operations.files import managed_file
from gpuprov.operations.system import skipped

UPSTREAM_SERVERS = {
    "docker.io": "https://registry-1.docker.io",
    "nvcr.io": "https://nvcr.io",
    "ghcr.io": "https://ghcr.io",
}


def mirror_settings(apt_url: str, keyring: Path, suite: str = "gpuprov", **extra) -> dict:
    """The `gpuprov_mirror_client` host var value (for the engine and tests)."""
    return {"apt_url": apt_url, "suite": suite, "keyring": str(keyring), **extra}


@deploy("Mirror client")
def mirror_client(ctx: NodeContext) -> None:
    mirror = ctx.var(MIRROR_DATA_KEY)
    if not mirror:
        skipped(name="Site mirror", reason="no mirror in the inventory: sources left as they are")
        return
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
    if registry and ctx.stack.container_runtime == "containerd":
        scheme = mirror.get("registry_scheme", "http")
        managed_file(
            name="containerd: registry mirrors from certs.d",
            path=CONTAINERD_REGISTRY,
            content=render(
                "containerd-registry.toml.j2",
                version=2,
                plugin="io.containerd.grpc.v1.cri",
                config_path=CONTAINERD_CERTS,
            ),
            digests=ctx.digests,
        )
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
