"""`gpuprov bundle build`: everything a rollout needs, assembled on the connected machine.

    for each target OS   apt closure (aptroot.py) -> DIR/apt/<os>/ signed with the bundle key
                         (RHEL: dnf closure (dnfroot.py) -> DIR/rpm/<os>/, repomd.xml signed)
    images               skopeo -> DIR/oci/ (one layout, blobs deduplicated)
    models               the model store -> DIR/models/ (upstream revision kept)
    wheels               gpuprov + dependencies per Python version -> DIR/wheels/
    keys/bundle.asc, manifest.json, manifest.json.asc (gpuprov/bundle/layout.py)

The bundle is assembled in a hidden sibling directory and renamed to DIR only when it is
complete and signed, so a failed build leaves nothing that looks like a bundle. The cache
(apt lists and .debs, skopeo's blobs, wheels) survives between builds under one lock.
`--since PREV/manifest.json` writes a differential bundle: the manifest lists the full file
set and names its base; the directory holds only files whose (path, sha256) the base lacks.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from gpuprov.bundle import layout
from gpuprov.bundle.packages import OsPackages, bundle_data, os_data, wanted_packages
from gpuprov.errors import InputError, Location, Problem
from gpuprov.inventory.bundle import BundleTarget
from gpuprov.inventory.model import Cluster

SUITE = "gpuprov"  # what deploys/mirror_client.py points hosts at
COMPONENT = "main"
VERIFY_IMAGE_VAR = "gpuprov_verify_image"
# glibc of each target OS: which manylinux wheels its Python runs.
GLIBC = {
    "debian12": (2, 36),
    "debian13": (2, 41),
    "ubuntu2204": (2, 35),
    "ubuntu2404": (2, 39),
    "rhel9": (2, 34),
}

Report = Callable[[str], None]


@dataclass(frozen=True)
class BuildOptions:
    out: Path
    cache: Path
    key_home: Path | None = None
    fingerprint: str | None = None
    passphrase_file: Path | None = None
    since: Path | None = None
    dry_run: bool = False


@dataclass
class Fetch:
    """One thing a build would fetch (dry run) or did fetch."""

    kind: str  # apt | rpm | oci | model | wheel
    name: str
    size: int | None  # bytes; None when the source does not say


@dataclass
class BuildResult:
    out: Path | None
    manifest: layout.Manifest | None = None
    fetches: list[Fetch] = field(default_factory=list)
    packages: dict[str, list[str]] = field(default_factory=dict)  # os -> closure file names
    images: list[str] = field(default_factory=list)
    carried: int = 0  # files in the directory (differential: fewer than listed)

    @property
    def fetch_bytes(self) -> int:
        return sum(f.size or 0 for f in self.fetches)


@contextlib.contextmanager
def cache_lock(cache: Path) -> Iterator[None]:
    """One build at a time per cache (apt and skopeo write into it)."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _sources_key(target: BundleTarget) -> str:
    h = hashlib.sha256()
    for s in target.sources:
        h.update(f"{s.url}\0{' '.join(s.suites)}\0{' '.join(s.components)}\0".encode())
        h.update(hashlib.sha256(s.keyring.read_bytes()).digest())
    return h.hexdigest()[:16]


# ---- packages ------------------------------------------------------------------------


def _base_status(root, target: BundleTarget) -> str:
    from gpuprov.bundle.aptroot import read_status_file

    if target.base.dpkg_status is not None:
        return read_status_file(target.base.dpkg_status)
    minimal = bundle_data()["minimal"]["apt"]
    return root.minimal_status(list(minimal["priorities"]), list(minimal["packages"]))


def apt_target(
    target: BundleTarget,
    pkgs: OsPackages,
    opts: BuildOptions,
    staging: Path | None,
    key,
    result: BuildResult,
    report: Report,
) -> None:
    """Resolve, fetch and publish one apt target OS."""
    from gpuprov.aptrepo import publish_repo
    from gpuprov.bundle.aptroot import AptRoot, DebRef, DebUri, ResolveError

    arch = os_data(target.os_id)["arch"]
    cache = opts.cache / "apt" / f"{target.os_id}-{_sources_key(target)}"
    root = AptRoot(
        cache / "root", opts.cache / "apt" / f"{target.os_id}-archives", arch, target.sources
    )
    root.prepare()
    report(f"{target.os_id}: apt-get update of {len(target.sources)} upstream source(s)")
    root.update(target.os_id)
    root.set_status(_base_status(root, target))
    closure: dict[str, DebRef] = {}
    uris: dict[str, DebUri] = {}
    transactions = pkgs.transactions()
    for specs in transactions:
        report(f"{target.os_id}: resolving with apt: {' '.join(specs)}")
        closure.update((d.filename, d) for d in root.closure(target.os_id, specs))
        uris.update((u.filename, u) for u in root.print_uris(specs))
    result.packages[target.os_id] = sorted(closure)
    result.fetches += [Fetch("apt", f"{target.os_id}/{u.filename}", u.size) for u in uris.values()]
    if opts.dry_run:
        return
    if uris:
        report(f"{target.os_id}: downloading {len(uris)} of {len(closure)} packages")
        for specs in transactions:
            root.download(target.os_id, specs)
    debs = []
    for ref in closure.values():
        path = root.archives / ref.filename
        if not path.is_file():
            raise ResolveError(f"{target.os_id}: apt did not leave {ref.filename} in its cache")
        debs.append(path)
    assert staging is not None
    report(f"{target.os_id}: publishing {len(debs)} packages as a signed apt repository")
    publish_repo(
        debs,
        staging / layout.APT_DIR / target.os_id,
        suite=SUITE,
        key=key,
        components=(COMPONENT,),
        architectures=(arch, "all"),
        origin="gpuprov-bundle",
        description=f"gpuprov bundle for {target.os_id}",
    )


def dnf_target(
    target: BundleTarget, pkgs: OsPackages, opts: BuildOptions, staging: Path | None, key,
    result: BuildResult, report: Report,
) -> None:  # fmt: skip
    """Resolve, fetch and publish one dnf target OS (RHEL): DIR/rpm/<os>/."""
    from gpuprov.bundle.dnfroot import DnfRoot, publish_rpm_repo

    cache = opts.cache / "dnf" / f"{target.os_id}-{_sources_key(target)}"
    root = DnfRoot(cache, os_data(target.os_id)["arch"], target.sources)
    root.prepare()
    for specs in pkgs.transactions():
        report(f"{target.os_id}: resolving with dnf: {' '.join(specs)}")
    have = set(root.cached())
    rpms, refs = root.resolve(target.os_id, pkgs, dry_run=opts.dry_run)
    result.packages[target.os_id] = [r.filename for r in refs]
    new = [r for r in refs if r.filename not in have]
    if opts.dry_run:
        sizes = root.sizes(target.os_id, new)
        result.fetches += [
            Fetch("rpm", f"{target.os_id}/{r.filename}", sizes.get(r.filename)) for r in new
        ]
        return
    result.fetches += [
        Fetch("rpm", f"{target.os_id}/{p.name}", p.stat().st_size)
        for p in rpms
        if p.name not in have
    ]
    assert staging is not None
    report(f"{target.os_id}: publishing {len(rpms)} packages as a signed RPM repository")
    publish_rpm_repo(
        rpms,
        staging / layout.RPM_DIR / target.os_id,
        key,
        modules_yaml=root.module_documents(root.enabled_streams(pkgs)),
        upstream_keys=sorted(root.root.glob("keys/source*.asc")),
    )


# ---- images, models, wheels ----------------------------------------------------------


def image_refs(cluster: Cluster) -> list[str]:
    """The test image of every host (gpuprov_verify_image) and the bundle's own list."""
    from gpuprov.safe_values import IMAGE_RE

    refs = set(cluster.bundle.images if cluster.bundle else ())
    problems = []
    for host in cluster.hosts.values():
        image = host.vars.get(VERIFY_IMAGE_VAR)
        if image is None:
            continue
        if not isinstance(image, str) or not IMAGE_RE.fullmatch(image):
            problems.append(Problem(host.location, f"{host.name}: {VERIFY_IMAGE_VAR} is not an image reference: {image!r}"))  # fmt: skip
            continue
        refs.add(image)
    if problems:
        raise InputError(problems)
    return sorted(refs)


def _images(cluster: Cluster, opts: BuildOptions, staging: Path | None, result: BuildResult, report: Report) -> None:  # fmt: skip
    from gpuprov.bundle import images

    refs = image_refs(cluster)
    if not refs:
        return
    insecure = cluster.bundle.insecure_registries if cluster.bundle else ()
    cache_layout = opts.cache / "oci"
    for ref in refs:
        if opts.dry_run:
            result.fetches.append(Fetch("oci", ref, images.remote_size(ref, insecure)))
        else:
            report(f"image {ref}")
            if images.fetch(ref, cache_layout, insecure):
                result.fetches.append(Fetch("oci", ref, None))
    result.images = refs
    if not opts.dry_run:
        assert staging is not None
        images.export(refs, cache_layout, staging / layout.OCI_DIR)


def _models(cluster: Cluster, opts: BuildOptions, staging: Path | None, result: BuildResult, report: Report) -> None:  # fmt: skip
    from gpuprov.mirror.store import add_model

    for model in cluster.bundle.models if cluster.bundle else ():
        if opts.dry_run:
            size = sum(
                p.stat().st_size
                for p in model.source.rglob("*")
                if p.is_file() and not p.is_symlink()
            )
            result.fetches.append(Fetch("model", model.repo, size))
            continue
        assert staging is not None
        report(f"model {model.repo} from {model.source}")
        add_model(
            model.source, staging / layout.MODELS_DIR, model.repo, model.revision, model.repo_type
        )
    store_tmp = staging / layout.MODELS_DIR / "tmp" if staging else None
    if store_tmp is not None and store_tmp.is_dir():
        shutil.rmtree(store_tmp)  # the store's staging area: empty after an import


def _python_versions(cluster: Cluster) -> list[str]:
    import sys

    spec = cluster.bundle
    return (
        list(spec.python)
        if spec and spec.python
        else [f"{sys.version_info[0]}.{sys.version_info[1]}"]
    )


def _wheels(cluster: Cluster, opts: BuildOptions, staging: Path | None, result: BuildResult, report: Report) -> None:  # fmt: skip
    from gpuprov.bundle import wheels

    targets = cluster.bundle.targets if cluster.bundle else {}
    glibc = min((GLIBC.get(os_id, (2, 17)) for os_id in targets), default=(2, 17))
    cache = opts.cache / "wheels"
    work = Path(tempfile.mkdtemp(prefix="gpuprov-own-wheel-"))
    try:
        report("building gpuprov's wheel")
        own = wheels.build_own_wheel(work)
        dest = staging / layout.WHEELS_DIR if staging else None
        first = True
        listed: set[str] = set()
        for python in _python_versions(cluster):
            report(f"resolving gpuprov's dependencies for Python {python}")
            files = wheels.resolve(own, python, glibc)
            paths = [own]
            for w in files:
                path = wheels.cached(cache, w)
                if path is None and opts.dry_run and w.filename in listed:
                    continue  # the same wheel for another Python version
                if path is None:
                    listed.add(w.filename)
                    result.fetches.append(Fetch("wheel", w.filename, None))
                    if opts.dry_run:
                        result.fetches[-1].size = wheels.remote_size(w)
                        continue
                    path = wheels.fetch(cache, w)
                    result.fetches[-1].size = path.stat().st_size
                paths.append(path)
            if dest is None:
                continue
            dest.mkdir(parents=True, exist_ok=True)
            for path in paths:
                if not (dest / path.name).exists():
                    shutil.copy2(path, dest / path.name)
            text = wheels.requirement_lines([dest / p.name for p in paths])
            (dest / f"requirements-{python}.txt").write_text(text)
            if first:
                (dest / "requirements.txt").write_text(text)
                first = False
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---- the whole bundle ----------------------------------------------------------------


def _check_out(out: Path) -> None:
    if out.is_symlink() or (out.exists() and (not out.is_dir() or any(out.iterdir()))):
        raise InputError([Problem(Location(str(out)), "output exists and is not an empty directory "
                                  "(a bundle is never written over another)")])  # fmt: skip


def _load_base(path: Path) -> layout.Manifest:
    if path.is_dir():
        path = path / layout.MANIFEST
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(
            [Problem(Location(str(path)), f"cannot read the base manifest: {exc}")]
        ) from None
    if len(data) > layout.MAX_MANIFEST_BYTES:
        raise InputError([Problem(Location(str(path)), "base manifest too large")])
    return layout.Manifest.from_json(data, source=str(path))


def _drop_carried_by_base(
    staging: Path, files: list[layout.FileEntry], base: layout.Manifest
) -> int:
    """Remove what the base already holds (same path and sha256); returns files kept."""
    have = {(f.path, f.sha256) for f in base.files}
    kept = 0
    for f in files:
        if (f.path, f.sha256) in have:
            (staging / f.path).unlink()
        else:
            kept += 1
    for d in sorted(
        (p for p in staging.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
    ):
        if not any(d.iterdir()):
            d.rmdir()
    return kept


def build_bundle(
    cluster: Cluster, opts: BuildOptions, report: Report = lambda _: None
) -> BuildResult:
    """Build (or with dry_run, only list) the bundle of `cluster`."""
    wanted = wanted_packages(cluster)  # every inventory problem before any fetch
    image_refs(cluster)
    spec = cluster.bundle
    assert spec is not None
    base = _load_base(opts.since) if opts.since else None
    out = opts.out.absolute()
    key = None
    if not opts.dry_run:
        _check_out(out)
        if opts.key_home is None:
            raise InputError([Problem(Location("--key-home"), "the bundle key's GnuPG home is needed "
                                      "(gpuprov bundle keygen)")])  # fmt: skip
        from gpuprov.aptrepo import load_key

        key = load_key(opts.key_home, opts.fingerprint, passphrase_file=opts.passphrase_file)
    result = BuildResult(out=None if opts.dry_run else out)
    staging = None
    if not opts.dry_run:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    try:
        with cache_lock(opts.cache):
            for os_id, pkgs in wanted.items():
                target = spec.targets[os_id]
                step = apt_target if pkgs.manager == "apt" else dnf_target
                step(target, pkgs, opts, staging, key, result, report)
            _images(cluster, opts, staging, result, report)
            _models(cluster, opts, staging, result, report)
            _wheels(cluster, opts, staging, result, report)
        if staging is None:
            return result
        assert opts.key_home is not None and key is not None
        layout.export_public_key(staging, opts.key_home, key.fingerprint)
        report("hashing every file for the manifest")
        files = layout.scan_tree(staging)
        result.carried = len(files)
        if base is not None:
            result.carried = _drop_carried_by_base(staging, files, base)
        result.manifest = layout.write_manifest(staging, files, base.id if base else None)
        layout.sign_manifest(
            staging, opts.key_home, key.fingerprint, passphrase_file=opts.passphrase_file
        )
        for path in [staging, *staging.rglob("*")]:
            if path.is_dir():
                os.chmod(path, 0o755)
        if out.exists():
            out.rmdir()  # checked empty above
        os.rename(staging, out)
        layout.fsync_dir(out.parent)
        staging = None
        return result
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def result_json(result: BuildResult) -> str:
    return json.dumps(
        {
            "out": str(result.out) if result.out else None,
            "id": result.manifest.id if result.manifest else None,
            "base": result.manifest.base if result.manifest else None,
            "files": len(result.manifest.files) if result.manifest else None,
            "carried": result.carried,
            "packages": result.packages,
            "images": result.images,
            "fetch": [f.__dict__ for f in result.fetches],
            "fetch_bytes": result.fetch_bytes,
        },
        indent=2,
    )
