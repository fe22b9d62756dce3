"""pyinfra operations the mirror host's deploys share (their facts: gpuprov.facts.tree).

- `tree_sync`: make a remote directory hold exactly a local directory's files, in one
  listing round trip. Content-addressed parts (the store's `blobs/`, an apt `pool/`) are
  compared by name and size only, so a converged 100 GB store is not re-read every run;
  everything else (refs.json, manifests, Release, Packages, wheels) by sha256. Each file
  lands under a temporary name and is renamed into place; files named in `last` are
  written after all others (a store's refs.json, an apt repo's InRelease), so a reader never
  sees metadata pointing at bytes that are not there yet.
- `venv_from_wheels`: a virtual environment per wheelhouse digest, installed offline, made
  current by swapping one symlink (venvs are not relocatable, so each gets its final path).
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from pyinfra import host
from pyinfra.api import FileUploadCommand, operation

from gpuprov.facts.tree import TreeListing, VenvLink

# Tabs and newlines would break the listing; no file the store or an apt repo writes has them.
_BAD_NAME_CHARS = ("\t", "\n")
_CHUNK = 200  # paths per rm/mkdir command line


def _under(rel: str, prefixes: tuple[str, ...]) -> bool:
    return any(rel.startswith(p.rstrip("/") + "/") for p in prefixes)


def local_listing(
    src: Path, immutable: tuple[str, ...], exclude: tuple[str, ...] = ()
) -> dict[str, tuple[int, str | None]]:
    out: dict[str, tuple[int, str | None]] = {}
    for path in sorted(p for p in src.rglob("*") if p.is_file() and not p.is_symlink()):
        rel = path.relative_to(src).as_posix()
        if _under(rel, exclude):
            continue
        if any(c in rel for c in _BAD_NAME_CHARS):
            raise ValueError(f"{path}: a tab or newline in a file name cannot be synced")
        if _under(rel, immutable):
            out[rel] = (path.stat().st_size, None)
        else:
            out[rel] = (path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest())
    return out


# What the two services import: checked and byte-compiled right after installing.
SERVICE_IMPORTS = (
    "import gpuprov.cli, gpuprov.cli.app, gpuprov.cli.mirror.serve, gpuprov.mirror.server, "
    "gpuprov.mirror.aptserve"
)

Listing = dict[str, tuple[int, str | None]]


def plan_sync(
    local: Listing, remote: Listing, *, last: tuple[str, ...] = (), delete: bool = True
) -> tuple[list[str], list[str]]:
    """(files to upload in order, remote files to remove). Both listings hash the same
    files (everything outside the immutable prefixes), so equal entries mean equal files.
    Uploads whose basename is in `last` go after all others."""
    changed = [rel for rel, meta in local.items() if remote.get(rel) != meta]
    changed.sort(key=lambda rel: (PurePosixPath(rel).name in last, rel))
    extra = sorted(set(remote) - set(local)) if delete else []
    return changed, extra


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


@operation()
def tree_sync(
    src: str | Path,
    dest: str,
    immutable: tuple[str, ...] = (),
    last: tuple[str, ...] = (),
    exclude: tuple[str, ...] = (),
    delete: bool = True,
):
    """
    Make `dest` hold exactly the files of the local directory `src` (root-owned, mode 0644,
    directories 0755).

    + src: local directory
    + dest: remote directory (created)
    + immutable: path prefixes whose files are content-addressed (compared by name+size)
    + last: file names (basenames) written after every other file
    + exclude: path prefixes of `src` never shipped (remote files there count as extra)
    + delete: remove remote files that `src` does not have

    **Example:**

    .. code:: python

        tree_sync(name="Model store", src="/srv/store", dest="/srv/gpuprov/models",
                  immutable=("blobs/",), last=("refs.json",))
    """
    src = Path(src)
    if not src.is_dir():
        raise ValueError(f"{src}: not a directory")
    local = local_listing(src, immutable, exclude)
    remote = host.get_fact(TreeListing, path=dest, immutable=" ".join(immutable))
    changed, extra = plan_sync(local, remote, last=last, delete=delete)
    if not changed and not extra:
        host.noop(f"{dest} already matches {src} ({len(local)} files)")
        return
    parents = sorted({str(PurePosixPath(dest, rel).parent) for rel in changed} | {dest})
    for chunk in _chunks(parents):
        yield "install -d -m 0755 -o root -g root " + " ".join(map(shlex.quote, chunk))
    for rel in changed:
        yield FileUploadCommand(str(src / rel), f"{dest}/{rel}.gpuprov-new")
    # Then into place, in the planned order (metadata last), a few hundred per command:
    # one SSH round trip per file would dominate a sync of many small files.
    for chunk in _chunks(changed):
        moves = " && ".join(
            f"mv -f {shlex.quote(f'{rel}.gpuprov-new')} {shlex.quote(rel)}" for rel in chunk
        )
        temps = " ".join(shlex.quote(f"{rel}.gpuprov-new") for rel in chunk)
        yield (
            f"cd {shlex.quote(dest)} && chown root:root -- {temps} && chmod 0644 -- {temps}"
            f" && {moves}"
        )
    for chunk in _chunks([f"{dest}/{rel}" for rel in extra]):
        yield "rm -f -- " + " ".join(map(shlex.quote, chunk))


@operation()
def venv_from_wheels(root: str, wheels: str, digest: str, pip_wheel: str):
    """
    Install every wheel of `wheels` (gpuprov and the server's resolved closure) offline
    into `<root>/venv-<digest>`, point `<root>/venv` at it, remove older ones.

    + root: e.g. /opt/gpuprov
    + wheels: remote wheelhouse directory
    + digest: the wheelhouse digest (names the venv)
    + pip_wheel: the file name of pip's wheel inside `wheels`

    **Example:**

    .. code:: python

        venv_from_wheels(root="/opt/gpuprov", wheels="/opt/gpuprov/wheels", digest=wh.digest,
                         pip_wheel=wh.pip_wheel.name)
    """
    name = f"venv-{digest[:16]}"
    if host.get_fact(VenvLink, root=root) == name:
        host.noop(f"{root}/venv is {name} already")
        return
    target = shlex.quote(f"{root}/{name}")
    w = shlex.quote(wheels)
    yield f"rm -rf {target} && python3 -m venv --without-pip {target}"
    # One pip run from its own wheel (a zip pip supports: no python3-pip package needed).
    # The wheelhouse is the resolved closure already, so --no-deps: gpuprov's control-node
    # dependencies (pyinfra, paramiko, gevent) are not in it and the services never import
    # them. --no-compile: byte-compiling every module (pygments alone has hundreds) is
    # minutes on a slow host; the import below compiles exactly what the service loads.
    yield (
        f"{target}/bin/python {w}/{shlex.quote(pip_wheel)}/pip install -q --no-index "
        "--no-deps --no-compile --no-cache-dir --disable-pip-version-check "
        f"--root-user-action=ignore {w}/*.whl"
    )
    # Proves the closure is complete and leaves the .pyc files the read-only service
    # cannot write itself.
    yield f"{target}/bin/python -I -c {shlex.quote(SERVICE_IMPORTS)}"
    tmp_link = shlex.quote(f"{root}/venv.new")
    yield f"ln -sfn {name} {tmp_link} && mv -Tf {tmp_link} {shlex.quote(f'{root}/venv')}"
    yield (
        f"find {shlex.quote(root)} -mindepth 1 -maxdepth 1 -name 'venv-*' "
        f"! -name {name} -exec rm -rf {{}} +"
    )
