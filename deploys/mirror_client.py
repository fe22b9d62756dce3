"""Point the host at the site mirror, and only at it (air-gapped sites).

Runbook:
1. Which mirror: the inventory's nearest mirror host by failure domain
   (gpuprov/inventory/mirrors.py, shown by `gpuprov plan`), unless the host var
   `gpuprov_mirror_client` wires it by hand (the lab, sites without `cluster.mirror`).
2. apt: /etc/apt/sources.list.d/gpuprov-mirror.sources for the host's OS (the bundle's
   `apt/<os-id>` repository, suite gpuprov) with Signed-By the bundle keyring
   (`cluster.mirror.keyring`) copied to /etc/apt/keyrings (never `trusted=yes`);
   `apt-get update` only when either file changed.
   RHEL (dnf) hosts instead: /etc/yum.repos.d/gpuprov-mirror.repo (the bundle's
   `rpm/<os-id>/` on the mirror's apt port), gpgcheck=1 and repo_gpgcheck=1, gpgkey= two
   local files in /etc/pki/rpm-gpg: the bundle key (`cluster.mirror.keyring`, armored) and
   the upstream RPM signing keys (`cluster.mirror.rpm_keys`); `dnf makecache` of that
   repository only when a file changed. Either way the host's other sources and
   repositories are left as they are (docs/deploys.md says why).
3. Hugging Face clients: HF_ENDPOINT and HF_HUB_DISABLE_XET=1 (the mirror speaks the Hub
   HTTP API, not Xet) for login shells (profile.d), every PAM session (/etc/environment),
   user systemd sessions (environment.d) and every system service (system.conf.d
   DefaultEnvironment=).
4. containerd: registry mirrors in /etc/containerd/certs.d/<upstream>/hosts.toml, enabled
   by a drop-in (the user's config.toml is not rewritten). docker: the site registry added
   to `registry-mirrors` (and `insecure-registries` for plain http) in daemon.json, merged
   into the user's settings. docker mirrors Docker Hub only: nvcr.io/ghcr.io images are
   pulled by their site-registry name. Either way the runtime restarts once afterwards.
   podman: a drop-in in /etc/containers/registries.conf.d naming the site registry (and
   as the mirror of docker.io, nvcr.io, ghcr.io); podman has no daemon to restart.

Hand-written settings (`gpuprov_mirror_client`, group or host `vars:`): {"apt_url",
"suite", "keyring" (path on the control node), "rpm_url" and "rpm_keys" (RHEL hosts: the
mirror's rpm/<os-id>/ URL, the upstream keys' path on the control node), "registry"
("host:port", optional),
"registry_scheme", "registry_ca" (a CA file on the host, for https), "hf_endpoint"
(optional)}. Without them and without `cluster.mirror` the steps show as skipped.
"""

from __future__ import annotations

from pathlib import Path

from gpuprov.deploys.context import MIRROR_DATA_KEY, NodeContext
from pyinfra.api import deploy

from gpuprov.inventory.mirrors import MIRROR_CHOICE_KEY
from gpuprov.operations.apt import deb822_source
from gpuprov.operations.docker import (
    DaemonJsonError,
    docker_daemon_lists,
    merge_daemon_json,
    missing_entries,
    parse_mirror_record,
)
from gpuprov.operations.envfile import environment_vars
from gpuprov.operations.files import managed_file, sha256
from gpuprov.operations.rpmrepo import KeyringError, armored_public_keys, dnf_repo
from gpuprov.operations.system import skipped
from gpuprov.paths import (
    CONTAINERD_CERTS,
    CONTAINERD_REGISTRY,
    HF_ENV,
    HF_PROFILE,
    HF_SYSTEMD,
    MIRROR_RPM_KEY,
    MIRROR_RPM_UPSTREAM_KEYS,
    MIRROR_SOURCE_NAME,
    PODMAN_REGISTRY,
    REGISTRY_UPSTREAMS,
)
from gpuprov.rendering import render
from gpuprov.safe_values import ABS_PATH_RE, host_port_problem, url_problem

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
        "rpm_url": lambda v: url_problem(v, ("http", "https", "file")),
        "hf_endpoint": url_problem,
        "registry": host_port_problem,
        "registry_scheme": lambda v: None if v in ("http", "https") else "expected http or https",
        "registry_ca": lambda v: None if ABS_PATH_RE.fullmatch(v) else "expected an absolute path",
    }
    for key, check in checks.items():
        value = mirror.get(key)
        if value is not None and (not isinstance(value, str) or check(value)):
            why = check(value) if isinstance(value, str) else "expected a string"
            return f"gpuprov_mirror_client.{key} {value!r}: {why}"
    return None


def client_settings(ctx: NodeContext) -> dict | None:
    """The host's mirror settings: its `gpuprov_mirror_client` var when set, else those of
    its nearest mirror for the OS the host runs; None without either."""
    mirror = ctx.var(MIRROR_DATA_KEY)
    if mirror:
        return mirror
    choice = ctx.var(MIRROR_CHOICE_KEY)
    return choice.settings(ctx.os_key) if choice is not None else None


@deploy("Mirror client")
def mirror_client(ctx: NodeContext) -> None:
    mirror = client_settings(ctx)
    if not mirror:
        skipped(name="Site mirror", reason="no mirror in the inventory: sources left as they are")
        return
    problem = settings_problem(mirror)
    if problem:
        from gpuprov.engine.refusal import HostRefused

        raise HostRefused(problem, "fix the host's vars in the inventory")
    where = f" ({mirror['mirror']})" if mirror.get("mirror") else ""
    if ctx.apt and mirror.get("apt_url"):
        deb822_source(
            name=f"apt source: the site mirror{where} (Signed-By the bundle keyring)",
            source_name=MIRROR_SOURCE_NAME,
            url=mirror["apt_url"],
            suite=mirror.get("suite", "gpuprov"),
            keyring=Path(mirror["keyring"]).read_bytes(),
            components=list(mirror.get("components", ["main"])),
            digests=ctx.digests,
        )
    elif ctx.apt:
        skipped(
            name="apt source: the site mirror",
            reason="no apt_url and keyring (set cluster.mirror.keyring to the bundle keyring: "
            "a repository is never used without one): apt sources left as they are",
        )
    if not ctx.apt:
        rpm_repository(ctx, mirror, where)
    hf = mirror.get("hf_endpoint")
    if hf:
        hf_environment(ctx, hf)
    registry = mirror.get("registry")
    scheme = mirror.get("registry_scheme", "http")
    if ctx.stack.container_runtime == "docker":
        docker_mirror(ctx, registry, scheme)
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
                    ca=mirror.get("registry_ca") if scheme == "https" else None,
                ),
                digests=ctx.digests,
            )


def rpm_keys(mirror: dict) -> dict[str, bytes]:
    """The two key files the .repo names, armored, read from the control node; a file that
    is missing or not a keyring refuses the host before anything is written."""
    from gpuprov.engine.refusal import HostRefused

    out = {}
    for key, path in (("keyring", MIRROR_RPM_KEY), ("rpm_keys", MIRROR_RPM_UPSTREAM_KEYS)):
        source = Path(mirror[key])
        try:
            out[path.rsplit("/", 1)[1]] = armored_public_keys(source.read_bytes(), str(source))
        except (OSError, KeyringError) as exc:
            raise HostRefused(
                f"mirror {key}: {exc}", "give the bundle keyring and the upstream keys"
            ) from None
    return out


def rpm_repository(ctx: NodeContext, mirror: dict, where: str) -> None:
    """The site mirror as a dnf repository, trusted through local key files only: the
    bundle key for repomd.xml (repo_gpgcheck), the upstream keys for each package
    (gpgcheck). Keys fetched from the mirror over HTTP would be trusted because the
    mirror sent them; never that."""
    if not (mirror.get("rpm_url") and mirror.get("keyring") and mirror.get("rpm_keys")):
        skipped(
            name="dnf repository: the site mirror",
            reason="no rpm_url, keyring and rpm_keys (set cluster.mirror.keyring to the bundle "
            "keyring and cluster.mirror.rpm_keys to the upstream keys of the bundle's "
            "rpm/<os-id>/keys/upstream.asc: a repository is never used without them): "
            "dnf repositories left as they are",
        )
        return
    dnf_repo(
        name=f"dnf repository: the site mirror{where} (gpgcheck, repo_gpgcheck, local keys)",
        repo_id=MIRROR_SOURCE_NAME,
        baseurl=mirror["rpm_url"],
        keys=rpm_keys(mirror),
        digests=ctx.digests,
    )


def hf_environment(ctx: NodeContext, hf: str) -> None:
    """HF_ENDPOINT and HF_HUB_DISABLE_XET=1 wherever a Hugging Face client may run."""
    managed_file(
        name="HF_ENDPOINT for systemd user sessions",
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
    environment_vars(
        name="HF_ENDPOINT for every PAM session (/etc/environment)",
        values={"HF_ENDPOINT": hf, "HF_HUB_DISABLE_XET": "1"},
        current=ctx.extras.get("environment"),
    )
    dropin = render("hf-mirror-systemd.conf.j2", hf_endpoint=hf)
    managed_file(
        name="HF_ENDPOINT for every system service (DefaultEnvironment=)",
        path=HF_SYSTEMD,
        content=dropin,
        digests=ctx.digests,
    )
    if ctx.digests.get(HF_SYSTEMD) != sha256(dropin):
        # PID 1 reads system.conf.d at boot and again on daemon-reload (systemd re-parses
        # its configuration before reloading units; no daemon-reexec needed, which would
        # also re-execute the manager binary). Services started from then on get the
        # variables; running ones keep their environment until they restart, which we do
        # not force: restarting a site's inference services is the site's decision.
        # Without a running systemd (a chroot, a container) there is nothing to reload.
        # (pyinfra.operations.server imported only here: docs/performance.md.)
        from pyinfra.operations import server

        server.shell(
            name="systemd: read the new DefaultEnvironment (daemon-reload)",
            commands=["if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi"],
        )


def docker_mirror(ctx: NodeContext, registry: str | None, scheme: str) -> None:
    """The site registry in daemon.json's registry-mirrors (and insecure-registries for
    plain http). What gpuprov adds is recorded on the host (DOCKER_MIRROR_RECORD), so when
    the host's mirror changes (another mirror host, port or scheme, or none) the old entries
    are taken out again; the user's own entries, recorded never, always stay."""
    lists: dict[str, list[str]] = {}
    if registry:
        lists["registry-mirrors"] = [f"{scheme}://{registry}"]
        if scheme == "http":
            lists["insecure-registries"] = [registry]
    try:
        before = parse_mirror_record(ctx.extras.get("docker_mirror"))
        added = missing_entries(ctx.docker_daemon, lists)
        stale = {k: [e for e in v if e not in lists.get(k, [])] for k, v in before.items()}
        stale = {k: v for k, v in stale.items() if v}
        merged = merge_daemon_json(ctx.docker_daemon, lists, remove=stale)
    except DaemonJsonError as exc:
        from gpuprov.engine.refusal import HostRefused

        raise HostRefused(str(exc), "fix the file on the host (docker cannot start)") from None
    if not lists and not stale:
        return  # no registry now, nothing of ours in daemon.json
    keys = dict.fromkeys([*before, *lists])
    record = {  # ours and still wanted, plus what this merge adds (once each)
        k: list(dict.fromkeys([*(e for e in before.get(k, []) if e in lists.get(k, [])),
                               *added.get(k, [])]))
        for k in keys
    }  # fmt: skip
    docker_daemon_lists(
        name="docker: pull Docker Hub images through the site registry"
        if registry
        else "docker: the former site registry taken out of daemon.json",
        lists=lists,
        current=ctx.docker_daemon,
        remove=stale,
        record=record,
    )
    if merged is not None:
        ctx.docker_daemon = merged
        ctx.runtime_restart = True
