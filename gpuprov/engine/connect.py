"""Turn a Cluster into a connected pyinfra State: one `Session` per run (or per wave).

pyinfra is used as a library (docs/pyinfra-library.md). We connect the
hosts ourselves, in parallel on pyinfra's gevent pool, instead of `connect_all`, because
`connect_all` raises "No hosts remaining!" when every host fails and logs a multi-line
error per host; we want one clear line per host and the decision left to the caller.
"""

from __future__ import annotations

import getpass
import logging
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from gpuprov.engine import fd_limit, timings
from gpuprov.engine.ssh_config import cluster_ssh_config
from gpuprov.errors import ConnectError, InputError
from gpuprov.inventory.model import Cluster, Host

if TYPE_CHECKING:
    from pyinfra.api import State
    from pyinfra.api.host import Host as PyinfraHost

# How often an idle SSH connection's reader wakes up (paramiko's default: 0.1 s) to see
# whether its transport was closed and whether a keepalive or rekey is due. Each wake-up
# is a socket timeout under gevent (~30 us of CPU here): 10 a second per open
# connection cost 0.2-0.4 ms of control-node CPU per connection-second, which a rollout
# holding a wave's connections through the wave's minutes pays for every host it holds
# (docs/scale.md). Closing a transport closes its socket, which wakes the reader at
# once under gevent; keepalives and handshake timeouts are in seconds anyway.
IDLE_POLL_S = 1.0


def _set_idle_poll() -> None:
    import paramiko

    # A private class attribute (pinned by tests/gpuprov/engine/test_idle_poll.py).
    setattr(paramiko.Transport, "_active_check_timeout", IDLE_POLL_S)  # noqa: B010


# Sudo passwords by the environment variable name that holds each (ssh.sudo_password_env).
SudoPasswords = Mapping[str, str]

# Host data keys under which deploys find gpuprov's own view of the host.
HOST_DATA_KEY = "gpuprov_host"
CLUSTER_DATA_KEY = "gpuprov_cluster"
MIRROR_REF_KEY = "gpuprov_mirror_ref"  # role: mirror hosts: the inventory's MirrorRef (ports)


@dataclass(frozen=True)
class ConnectResult:
    host: str
    ok: bool
    kind: str = "ok"  # ok | unknown-key | changed-key | auth | unreachable | error
    message: str = ""  # one line, ready to print


@dataclass
class Session:
    """A pyinfra State over the selected hosts, with per-host connection results."""

    cluster: Cluster
    state: State
    hosts: dict[str, Host]  # the selected gpuprov hosts, inventory order
    results: dict[str, ConnectResult] = field(default_factory=dict)

    def pyinfra_host(self, name: str) -> PyinfraHost:
        return self.state.inventory.get_host(name)

    @property
    def connected(self) -> list[str]:
        return [n for n in self.hosts if n in self.results and self.results[n].ok]

    @property
    def failed(self) -> list[ConnectResult]:
        return [r for n, r in self.results.items() if not r.ok]

    def close(self) -> None:
        from pyinfra.api.connect import disconnect_all

        with quiet_pyinfra():
            disconnect_all(self.state)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def quiet_pyinfra() -> Iterator[None]:
    """pyinfra logs connection errors and command failures itself (with colours and
    tracebacks-by-another-name); we report them ourselves, so silence its loggers."""
    names = ("pyinfra", "paramiko")
    saved = []
    for name in names:
        log = logging.getLogger(name)
        saved.append((log, log.level, log.propagate, list(log.handlers)))
        log.handlers = [logging.NullHandler()]
        log.propagate = False
        log.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for log, level, propagate, handlers in saved:
            log.handlers = handlers
            log.propagate = propagate
            log.setLevel(level)


def sudo_password(cluster: Cluster, hosts: list[Host], prompt: bool) -> dict[str, str] | None:
    """The sudo passwords, one per `ssh.sudo_password_env` variable name the hosts use
    (from that environment variable, or a prompt naming the variable and its users);
    each host gets the one of its own variable. None when no host needs one (passwordless
    sudo is the common case on provisioned hosts). Never logged, never in a message."""
    needing = [h for h in hosts if h.ssh.sudo and h.ssh.user != "root"]
    by_env: dict[str, list[Host]] = {}
    for h in needing:
        by_env.setdefault(h.ssh.sudo_password_env, []).append(h)
    secrets: dict[str, str] = {}
    for env, users in by_env.items():
        if os.environ.get(env):
            secrets[env] = os.environ[env]
        elif prompt:
            names = ", ".join(sorted({h.ssh.user for h in users}))
            secrets[env] = getpass.getpass(f"sudo password for {names} (or set ${env}): ")
    return secrets or None


def password_for(host: Host, password: SudoPasswords | str | None) -> str | None:
    """This host's sudo password: the one of its own `sudo_password_env` variable."""
    if password is None or isinstance(password, str):
        return password  # one secret given for every host by the caller
    return password.get(host.ssh.sudo_password_env)


def host_data(
    cluster: Cluster,
    host: Host,
    *,
    accept_new: bool,
    password: SudoPasswords | str | None,
) -> dict[str, object]:
    ssh = host.ssh
    data: dict[str, object] = {
        "ssh_hostname": host.address,
        "ssh_port": ssh.port,
        "ssh_user": ssh.user,
        "ssh_known_hosts_file": str(cluster.known_hosts_path),
        # ~/.ssh/config behind a block that makes ProxyJump hops strict too.
        "ssh_config_file": str(cluster_ssh_config(cluster.known_hosts_path)),
        "ssh_strict_host_key_checking": "accept-new" if accept_new else "yes",
        "ssh_allow_agent": False,
        "ssh_look_for_keys": ssh.key is None,
        "ssh_connect_retries": 0,
        HOST_DATA_KEY: host,
        CLUSTER_DATA_KEY: cluster.name,
    }
    if host.role == "mirror" and cluster.mirror is not None:
        data[MIRROR_REF_KEY] = cluster.mirror
    if ssh.key is not None:
        data["ssh_key"] = str(Path(ssh.key).expanduser())
    if ssh.sudo and ssh.user != "root":
        data["_sudo"] = True
        secret = password_for(host, password)
        if secret:
            data["_sudo_password"] = secret
    # Free-form inventory vars (e.g. gpuprov_root, simulated GPUs) reach the deploys as-is;
    # they may not shadow the connection settings above.
    for key, value in host.vars.items():
        data.setdefault(str(key), value)
    if host.role == "gpu":
        from gpuprov.inventory.mirrors import MIRROR_CHOICE_KEY, nearest_mirror

        # The deploys derive the host's mirror wiring from it (its OS is known only from
        # facts); an explicit `gpuprov_mirror_client` var still wins over it.
        data[MIRROR_CHOICE_KEY] = nearest_mirror(cluster, host)
    return data


def build_state(
    cluster: Cluster,
    hosts: list[Host],
    *,
    accept_new: bool = False,
    password: SudoPasswords | str | None = None,
    parallel: int | None = None,
) -> State:
    from pyinfra.api import Config, Inventory, State

    if not hosts:
        raise InputError("no hosts selected (check --limit against the inventory)")
    fd_limit.check(len(hosts))
    _set_idle_poll()
    names = [
        (h.name, host_data(cluster, h, accept_new=accept_new, password=password)) for h in hosts
    ]
    groups: dict[str, tuple[list[str], dict]] = {}
    for h in hosts:
        groups.setdefault(h.group, ([], {}))[0].append(h.name)
    inventory = Inventory((names, {}), **groups)
    timeout = max(h.ssh.connect_timeout for h in hosts)
    config = Config(CONNECT_TIMEOUT=timeout, FAIL_PERCENT=None, PARALLEL=parallel or len(hosts))
    with quiet_pyinfra():
        return State(inventory, config, check_for_changes=True)


def describe_error(cluster: Cluster, host: Host, message: str) -> tuple[str, str]:
    """Map pyinfra's ConnectError text to (kind, one line with the fix)."""
    where = f"{host.name} ({host.address}:{host.ssh.port})"
    inv = cluster.path
    low = message.lower()
    hop = _other_host(message, host)
    if hop and ("no host key" in low or "does not match" in low):
        # A ProxyJump hop from ~/.ssh/config, checked against the cluster's file too.
        return "unknown-key" if "no host key" in low else "changed-key", (
            f"{where}: the key of ProxyJump hop {hop} "
            + ("is not in" if "no host key" in low else "DOES NOT MATCH")
            + f" {cluster.known_hosts_path} (hops are checked strictly against the "
            "cluster's known_hosts) — add the hop's key line there after comparing its "
            "fingerprint with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on its console"
        )
    if "no host key" in low:
        return "unknown-key", (
            f"{where}: host key not in {cluster.known_hosts_path} — run "
            f"`gpuprov hosts trust {inv} --limit {host.name}`"
        )
    if "host key" in low and "does not match" in low:
        return "changed-key", (
            f"{where}: HOST KEY CHANGED (does not match {cluster.known_hosts_path}); possible "
            f"man-in-the-middle — if the host was reinstalled, run "
            f"`gpuprov hosts trust {inv} --limit {host.name} --replace`"
        )
    if "authentication" in low:
        key = host.ssh.key or "default keys"
        return "auth", (
            f"{where}: authentication failed as {host.ssh.user!r} with {key} — check ssh.user "
            f"and ssh.key in the inventory and the host's authorized_keys"
        )
    if "resolve" in low:
        return "unreachable", f"{where}: cannot resolve {host.address!r}"
    if any(s in low for s in ("could not connect", "timed out", "refused", "unreachable", "eof")):
        detail = message.split("(", 1)[-1].rstrip(")") if "(" in message else message
        detail = detail.replace("[Errno None] ", "")
        return "unreachable", f"{where}: unreachable ({detail.strip()})"
    return "error", f"{where}: cannot connect ({message})"


def _other_host(message: str, host: Host) -> str | None:
    """The host a host-key error names when it is not `host` itself (a ProxyJump hop)."""
    import re

    m = re.search(r"host key for (\S+?)(?: found| does not match|\.?\)|$)", message, re.I)
    if m is None:
        return None
    named = m.group(1).rstrip(".")
    mine = {host.address, f"[{host.address}]:{host.ssh.port}"}
    return None if named in mine else named


def connect_hosts(session: Session) -> dict[str, ConnectResult]:
    """Connect every host of the session in parallel; never raises for a host."""
    import gevent
    from paramiko import BadHostKeyException
    from pyinfra.api.exceptions import ConnectError as PyinfraConnectError
    from pyinfra.connectors.sshuserclient.client import get_host_keys
    from pyinfra.context import ctx_state

    state = session.state
    # pyinfra memoizes known_hosts per process; `hosts trust` may have just written it.
    get_host_keys.cache.clear()

    started: dict[str, float] = {}

    def one(name: str) -> ConnectResult:
        host = state.inventory.get_host(name)
        started[name] = time.perf_counter()
        try:
            host.connect(show_errors=False, raise_exceptions=True)
        except PyinfraConnectError as exc:
            kind, line = describe_error(session.cluster, session.hosts[name], str(exc))
            return ConnectResult(name, False, kind, line)
        except Exception as exc:  # a paramiko/gevent surprise must not kill other hosts
            text = f"{type(exc).__name__}: {exc}"
            if isinstance(exc.__context__, BadHostKeyException):
                # pyinfra's handler trips over a hop's mismatch (AttributeError on
                # client._ssh_config); the paramiko error under it is the real one.
                text = f"Host key for {exc.__context__.hostname} does not match"
            kind, line = describe_error(session.cluster, session.hosts[name], text)
            return ConnectResult(name, False, kind, line)
        timings.current().connects[name] = time.perf_counter() - started[name]
        return ConnectResult(name, True)

    # pyinfra's state context is process-global: hold it across the parallel section.
    with quiet_pyinfra(), ctx_state.use(state):
        greenlets = {name: state.pool.spawn(one, name) for name in session.hosts}
        gevent.joinall(list(greenlets.values()))
    results = {name: g.get() for name, g in greenlets.items()}
    for name, res in results.items():
        host = state.inventory.get_host(name)
        if res.ok:
            state.activate_host(host)
        else:
            state.failed_hosts.add(host)
    session.results = results
    return results


def connect(
    cluster: Cluster,
    hosts: list[Host],
    *,
    accept_new: bool = False,
    prompt_password: bool = False,
    require_all: bool = False,
    password: SudoPasswords | str | None = None,
) -> Session:
    """Build the State for `hosts` and connect them in parallel.

    Returns the Session with per-host results. Raises ConnectError (exit code 3) when no
    host could be reached, or when any failed and `require_all` is set; the message has
    one line per failed host. `password` (the sudo password, already asked for) skips the
    environment/prompt lookup: a staged rollout asks once, then connects once per wave.
    """
    if password is None:
        password = sudo_password(cluster, hosts, prompt_password)
    state = build_state(cluster, hosts, accept_new=accept_new, password=password)
    session = Session(cluster, state, {h.name: h for h in hosts})
    connect_hosts(session)
    if not session.connected or (require_all and session.failed):
        lines = [r.message for r in session.failed]
        session.close()
        raise ConnectError("\n".join(lines) if lines else "no host connected")
    return session
