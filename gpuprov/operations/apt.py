"""apt: exact-version installs that stay put (held), and signed deb822 sources."""

from __future__ import annotations

import shlex
from collections.abc import Mapping

from pyinfra import host
from pyinfra.api import operation
from pyinfra.api.exceptions import OperationError
from pyinfra.facts.deb import DebPackages

from gpuprov.aptrepo.sources import deb822_source as render_deb822
from gpuprov.facts.apt import AptHolds
from gpuprov.operations.debversion import compare, sort_key
from gpuprov.operations.files import changed_file_writes

APT_GET = (
    "DEBIAN_FRONTEND=noninteractive apt-get -q -y "
    "-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold"
)


def _installed_from_fact() -> dict[str, str]:
    return {
        name: max(versions, key=sort_key)
        for name, versions in (host.get_fact(DebPackages) or {}).items()
        if versions
    }


def _names(names) -> str:
    return " ".join(shlex.quote(n) for n in sorted(names))


@operation()
def apt_pinned_install(
    packages: Mapping[str, str | None],
    hold: bool = True,
    allow_downgrade: bool = False,
    remove: list[str] | None = None,
    installed: dict[str, str] | None = None,
    held: list[str] | None = None,
    update: bool = True,
):
    """
    Install packages at exact versions in one apt transaction, then hold them.

    + packages: name -> exact version ("580.95.05-1"), or None for "any version"
    + hold: `apt-mark hold` them so unattended upgrades cannot move them
    + allow_downgrade: otherwise a newer installed version is an error, never replaced
    + remove: installed packages to remove in the same transaction (an old branch's
      names, which the new packages replace); unheld first
    + installed: name -> installed version (HostState); read from the host when None
    + held: names held now (HostState); read from the host when None
    + update: run `apt-get update` first when anything is to be installed

    **Example:**

    .. code:: python

        apt_pinned_install(packages={"nvidia-driver-580-open": "580.95.05-1"})
    """
    if installed is None:
        installed = _installed_from_fact()
    if held is None:
        holds: list[str] = host.get_fact(AptHolds)
        held = holds
    held_now = set(held)
    remove = sorted(n for n in (remove or []) if n in installed and n not in packages)

    changes: dict[str, str | None] = {}
    for name, want in packages.items():
        have = installed.get(name)
        if have is None or (want is not None and have != want):
            changes[name] = want
    downgrades = [
        f"{n} {installed[n]} -> {v}"
        for n, v in changes.items()
        if v is not None and n in installed and compare(installed[n], v) > 0
    ]
    if downgrades and not allow_downgrade:
        raise OperationError(
            "refusing to downgrade " + ", ".join(sorted(downgrades)) + " (allow_downgrade=True)"
        )
    to_hold = sorted(n for n in packages if hold and (n in changes or n not in held_now))
    if not packages and not remove:
        host.noop("nothing to install")
        return
    if not changes and not remove and not to_hold:
        host.noop(
            "installed"
            + (" and held" if hold else "")
            + ": "
            + ", ".join(f"{n}={installed[n]}" for n in sorted(packages))
        )
        return

    unhold = held_now & (set(changes) | set(remove))
    if unhold:
        yield f"apt-mark unhold {_names(unhold)}"
    if changes or remove:
        if update:
            yield "apt-get -q update"
        specs = [f"{n}={v}" if v else n for n, v in sorted(changes.items())]
        specs += [f"{n}-" for n in remove]
        flags = " --allow-downgrades" if downgrades else ""
        yield f"{APT_GET}{flags} install {' '.join(shlex.quote(s) for s in specs)}"
    if to_hold:
        yield f"apt-mark hold {_names(to_hold)}"


@operation()
def deb822_source(
    source_name: str,
    url: str,
    suite: str,
    keyring: bytes,
    components: list[str] | None = None,
    digests: dict[str, str | None] | None = None,
):
    """
    Point apt at a signed repository: /etc/apt/sources.list.d/<name>.sources with
    Signed-By /etc/apt/keyrings/<name>.gpg; `apt-get update` only when either changed.

    + source_name: file stem ("gpuprov-mirror")
    + url: repository base URL
    + suite: dists/<suite>
    + keyring: the binary public keyring apt verifies InRelease with
    + components: default ["main"]
    + digests: current sha256 per path (FileDigests); read from the host when None
    """
    keyring_path = f"/etc/apt/keyrings/{source_name}.gpg"
    source_path = f"/etc/apt/sources.list.d/{source_name}.sources"
    stanza = render_deb822(url, suite, components or ["main"], keyring_path)
    writes = changed_file_writes(((keyring_path, keyring), (source_path, stanza)), digests)
    if not writes:
        host.noop(f"apt source {source_name} ({url} {suite}) is up to date")
        return
    yield from writes
    yield "apt-get -q update"


DPKG_LOCK_WAIT = 300  # seconds: long enough for a cut-off dpkg to finish, then give up


def dpkg_configure_command(lock_wait: int = DPKG_LOCK_WAIT) -> str:
    """`dpkg --configure -a`, retried while another dpkg or apt holds the lock, for at
    most lock_wait seconds (dpkg itself never waits: it fails at once on a held lock)."""
    return (
        f"_end=$(( $(date +%s) + {int(lock_wait)} )); "
        "while :; do "
        "_out=$(DEBIAN_FRONTEND=noninteractive dpkg --force-confdef --force-confold "
        "--configure -a 2>&1) && { printf '%s\\n' \"$_out\"; exit 0; }; "
        'case "$_out" in *lock*) ;; *) printf \'%s\\n\' "$_out" >&2; exit 1 ;; esac; '
        'if [ "$(date +%s)" -ge "$_end" ]; then '
        f"echo \"gpuprov: dpkg's lock still held after {int(lock_wait)} s: see which "
        "process holds it (lslocks | grep /var/lib/dpkg), let it finish or stop it, "
        'then apply again" >&2; exit 1; fi; '
        "sleep 2; done"
    )


@operation()
def dpkg_recover(
    interrupted: list[str] | None = None,
    lock_holders: dict[int, str] | None = None,
    lock_wait: int = DPKG_LOCK_WAIT,
):
    """
    Finish an install an SSH drop or a kill cut short, before any new apt transaction.

    + interrupted: packages `dpkg --audit` names (HostState.dpkg.interrupted)
    + lock_holders: pid -> dpkg lock file still held (HostState.dpkg.lock_holders)
    + lock_wait: seconds to wait for a held lock before failing, naming it

    **Example:**

    .. code:: python

        dpkg_recover(interrupted=["nvidia-driver-580-open"], lock_holders={})
    """
    if not interrupted and not lock_holders:
        host.noop("dpkg: no interrupted install, lock free")
        return
    yield dpkg_configure_command(lock_wait)


def dpkg_recover_name(interrupted: list[str], lock_holders: dict[int, str]) -> str:
    """What the plan and the output call the step: what was found and what runs."""
    if interrupted:
        named = ", ".join(interrupted[:5]) + (" ..." if len(interrupted) > 5 else "")
        what = f"dpkg was interrupted ({named} not configured)"
    elif lock_holders:
        what = f"dpkg's lock is held by pid {', '.join(map(str, sorted(lock_holders)))}"
    else:
        return "dpkg: no interrupted install"
    return f"{what}: dpkg --configure -a (waits up to {DPKG_LOCK_WAIT} s for the lock)"
