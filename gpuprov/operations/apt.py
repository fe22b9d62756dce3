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
from gpuprov.operations.files import current_digest, sha256, write_file_command

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
    changed = False
    for path, content in ((keyring_path, keyring), (source_path, stanza)):
        if current_digest(path, digests) != sha256(content):
            changed = True
            yield write_file_command(path, content, "644")
    if not changed:
        host.noop(f"apt source {source_name} ({url} {suite}) is up to date")
        return
    yield "apt-get -q update"
