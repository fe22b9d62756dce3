"""The `cluster.bundle:` section: what an air-gapped bundle is built from (docs/inventory.md).

Everything here is read on the connected machine and turned into commands (apt, skopeo,
pip) and paths, so every value is checked with `re.fullmatch` at this edge and every
problem is reported with its FILE:LINE:COL, like the rest of the inventory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap

from gpuprov.errors import Location
from gpuprov.inventory.reader import Missing, Reader, suggest, type_name
from gpuprov.safe_values import IMAGE_RE

BUNDLE_KEYS = ("targets", "mirror_os", "images", "insecure_registries", "models", "python")
TARGET_KEYS = ("sources", "base")
SOURCE_KEYS = ("url", "suites", "components", "keyring")
MODEL_KEYS = ("repo", "source", "revision", "type")
BASE_FILES = ("facts", "dpkg_status")

URL_RE = re.compile(r"(https?|file)://[A-Za-z0-9._~:/?#@!$&'()*+,;=%-]+")
# A suite ("bookworm-updates") or a flat repository's path ("/", "./", "x86_64/").
SUITE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}|\.?/|[A-Za-z0-9._-]{1,64}/")
COMPONENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# A registry as `host[:port]`. Image references follow safe_values.IMAGE_RE, the same
# rule as the hosts' gpuprov_verify_image.
REGISTRY_RE = re.compile(r"[a-z0-9][a-z0-9.-]*(:[0-9]{1,5})?")
PYTHON_RE = re.compile(r"3\.[0-9]{1,2}")
REPO_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
REVISION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,199}")


@dataclass(frozen=True)
class AptSourceSpec:
    """One upstream repository, trusted only through its own keyring (Signed-By)."""

    url: str
    suites: tuple[str, ...]
    components: tuple[str, ...]  # empty for a flat repository (suite ending in "/")
    keyring: Path
    location: Location = Location("<default>")


@dataclass(frozen=True)
class BaseSet:
    """What the target hosts already have. Neither file: the OS's minimal install. A
    `gpuprov facts --output json` file names the hosts' kernels (their headers go in); a
    dpkg status file (a real host's /var/lib/dpkg/status) is the installed base apt
    resolves against instead of the minimal install."""

    facts: Path | None = None
    dpkg_status: Path | None = None
    location: Location = Location("<default>")

    @property
    def minimal(self) -> bool:
        return self.dpkg_status is None


@dataclass(frozen=True)
class BundleTarget:
    os_id: str
    sources: tuple[AptSourceSpec, ...]
    base: BaseSet = BaseSet()
    location: Location = Location("<default>")


@dataclass(frozen=True)
class ModelSpec:
    repo: str  # "org/name"
    source: Path  # a Hugging Face cache or a local directory
    revision: str | None = None
    repo_type: str = "model"
    location: Location = Location("<default>")


@dataclass(frozen=True)
class BundleSpec:
    targets: dict[str, BundleTarget] = field(default_factory=dict)
    mirror_os: str | None = None
    images: tuple[str, ...] = ()
    models: tuple[ModelSpec, ...] = ()
    python: tuple[str, ...] = ()
    # Registries reached over plain HTTP or with a self-signed certificate ("host:port").
    insecure_registries: tuple[str, ...] = ()
    location: Location = Location("<default>")


def _path(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def _file(r: Reader, node: Any, key: Any, where: str, base: Path, *, directory: bool = False) -> Path | None:  # fmt: skip
    value = node.get(key)
    if not isinstance(value, str) or not value or "\0" in value:
        r.error(r.value_loc(node, key), f"{where}: expected a path, got {type_name(value)}")
        return None
    path = _path(base, value)
    ok = path.is_dir() if directory else path.is_file()
    if not ok:
        kind = "directory" if directory else "file"
        r.error(r.value_loc(node, key), f"{where}: {kind} not found: {path}")
        return None
    return path


def _source(r: Reader, node: Any, where: str, base: Path, *, dnf: bool = False) -> AptSourceSpec | None:  # fmt: skip
    """One upstream. apt: url, suites, components, keyring. dnf (RHEL): url is the
    repository's baseurl (the directory holding repodata/) and keyring its signing key."""
    if not isinstance(node, CommentedMap):
        r.error(r.node_loc(node), f"{where}: expected a mapping with url, {'' if dnf else 'suites, '}keyring")  # fmt: skip
        return None
    r.check_keys(node, ("url", "keyring") if dnf else SOURCE_KEYS, where,
                 also_ok=("suites", "components") if dnf else ())  # fmt: skip
    for k in ("suites", "components") if dnf else ():
        if k in node:
            r.error(r.key_loc(node, k), f"{where}.{k}: a dnf (RHEL) repository has no {k}; "
                    "`url` is its baseurl, the directory that holds repodata/")  # fmt: skip
    url = r.string(node, "url", where)
    if url is Missing:
        r.error(r.node_loc(node), f"{where}: missing `url`")
    elif not URL_RE.fullmatch(url):
        r.error(r.value_loc(node, "url"), f"{where}.url: expected an http(s):// or file:// URL, got {url!r}")  # fmt: skip
        url = Missing
    if dnf:
        keyring = _file(r, node, "keyring", f"{where}.keyring", base) if "keyring" in node else None
        if "keyring" not in node:
            r.error(r.node_loc(node), f"{where}: missing `keyring` (the repository's signing key; never unsigned)")  # fmt: skip
        if url is Missing or keyring is None:
            return None
        return AptSourceSpec(url, (), (), keyring, r.node_loc(node))
    suites = r.string_list(node, "suites", where)
    if suites is Missing or not suites:
        r.error(r.node_loc(node), f"{where}: missing `suites` (e.g. [bookworm, bookworm-updates])")
        suites = Missing
    else:
        for i, s in enumerate(suites):
            if not SUITE_RE.fullmatch(s):
                r.error(r.value_loc(node["suites"], i) if isinstance(node["suites"], list) else r.value_loc(node, "suites"),
                        f"{where}.suites[{i}]: not a suite name or flat path: {s!r}")  # fmt: skip
                suites = Missing
                break
    components = r.string_list(node, "components", where)
    if components is Missing:
        components = []
    for i, c in enumerate(components):
        if not COMPONENT_RE.fullmatch(c):
            r.error(
                r.value_loc(node, "components"), f"{where}.components[{i}]: bad component {c!r}"
            )
            components = Missing
            break
    if suites is not Missing and components is not Missing:
        flat = [s for s in suites if s.endswith("/")]
        if flat and components:
            r.error(r.value_loc(node, "components"), f"{where}: a flat repository ({flat[0]!r}) has no components")  # fmt: skip
        if len(flat) != len(suites) and not components:
            r.error(r.node_loc(node), f"{where}: missing `components` (e.g. [main])")
    keyring = None
    if "keyring" not in node:
        r.error(r.node_loc(node), f"{where}: missing `keyring` (the repository's signing key; never unsigned)")  # fmt: skip
    else:
        keyring = _file(r, node, "keyring", f"{where}.keyring", base)
    if url is Missing or suites is Missing or components is Missing or keyring is None:
        return None
    return AptSourceSpec(url, tuple(suites), tuple(components), keyring, r.node_loc(node))


def _base(r: Reader, node: CommentedMap, where: str, base: Path) -> BaseSet:
    value = node.get("base", "minimal")
    loc = r.value_loc(node, "base") if "base" in node else r.node_loc(node)
    if value == "minimal":
        return BaseSet(location=loc)
    if isinstance(value, CommentedMap) and value and set(value) <= set(BASE_FILES):
        files = {k: _file(r, value, k, f"{where}.base.{k}", base) for k in value}
        return BaseSet(files.get("facts"), files.get("dpkg_status"), loc)
    r.error(loc, f"{where}.base: expected `minimal` or a mapping of facts: FILE.json and/or "
            f"dpkg_status: FILE, got {type_name(value)}")  # fmt: skip
    return BaseSet(location=loc)


def _targets(r: Reader, node: CommentedMap, base: Path) -> dict[str, BundleTarget]:
    from gpuprov.tables import os_ids, package_manager

    known = os_ids()
    t = r.mapping(node, "targets", "cluster.bundle", required=True)
    out: dict[str, BundleTarget] = {}
    if t is None:
        return out
    for os_id, tnode in t.items():
        where = f"cluster.bundle.targets.{os_id}"
        if os_id not in known:
            r.error(r.key_loc(t, os_id), f"unknown target OS {os_id!r}{suggest(str(os_id), known)} "
                    f"(known: {', '.join(known)})")  # fmt: skip
            continue
        if not isinstance(tnode, CommentedMap):
            r.error(r.value_loc(t, os_id), f"{where}: expected a mapping with sources and base, got {type_name(tnode)}")  # fmt: skip
            continue
        r.check_keys(tnode, TARGET_KEYS, where)
        snode = tnode.get("sources")
        if not isinstance(snode, list) or not snode:
            r.error(r.key_loc(t, os_id), f"{where}: `sources` must list the upstream repositories")
            continue
        dnf = package_manager(str(os_id)) == "dnf"
        sources = [
            _source(r, s, f"{where}.sources[{i}]", base, dnf=dnf) for i, s in enumerate(snode)
        ]
        base_set = _base(r, tnode, where, base)
        if dnf and base_set.dpkg_status is not None:
            r.error(base_set.location, f"{where}.base.dpkg_status: a RHEL target has no dpkg status; "
                    "its whole closure is carried (only `facts` applies)")  # fmt: skip
        out[os_id] = BundleTarget(
            os_id, tuple(s for s in sources if s is not None), base_set, r.key_loc(t, os_id)
        )
    return out


def _models(r: Reader, node: CommentedMap, base: Path) -> tuple[ModelSpec, ...]:
    m = node.get("models")
    if m is None:
        return ()
    if not isinstance(m, list):
        r.error(r.value_loc(node, "models"), f"cluster.bundle.models: expected a list, got {type_name(m)}")  # fmt: skip
        return ()
    out = []
    for i, item in enumerate(m):
        where = f"cluster.bundle.models[{i}]"
        if not isinstance(item, CommentedMap):
            r.error(r.value_loc(m, i), f"{where}: expected a mapping with repo and source")
            continue
        r.check_keys(item, MODEL_KEYS, where)
        repo = r.string(item, "repo", where)
        if repo is Missing or not REPO_RE.fullmatch(repo):
            r.error(r.value_loc(item, "repo") if "repo" in item else r.node_loc(item),
                    f"{where}.repo: expected 'org/name', got {item.get('repo')!r}")  # fmt: skip
            continue
        if "source" not in item:
            r.error(r.node_loc(item), f"{where}: missing `source` (a Hugging Face cache or a directory)")  # fmt: skip
            continue
        source = _file(r, item, "source", f"{where}.source", base, directory=True)
        revision = r.string(item, "revision", where)
        if revision is not Missing and not REVISION_RE.fullmatch(revision):
            r.error(r.value_loc(item, "revision"), f"{where}.revision: bad revision {revision!r}")
            continue
        rtype = r.string(item, "type", where, ("model", "dataset"))
        if source is None:
            continue
        out.append(ModelSpec(repo, source, None if revision is Missing else revision,
                             "model" if rtype is Missing else rtype, r.node_loc(item)))  # fmt: skip
    return tuple(out)


def read_bundle(r: Reader, cnode: CommentedMap, base: Path) -> BundleSpec | None:
    node = r.mapping(cnode, "bundle", "cluster")
    if node is None:
        return None
    r.check_keys(node, BUNDLE_KEYS, "cluster.bundle")
    targets = _targets(r, node, base)
    mirror_os = r.string(node, "mirror_os", "cluster.bundle")
    if mirror_os is Missing:
        mirror_os = None
    elif mirror_os not in targets:
        r.error(r.value_loc(node, "mirror_os"), f"cluster.bundle.mirror_os {mirror_os!r} is not one of "
                f"bundle.targets ({', '.join(targets) or 'none'})")  # fmt: skip
    images = r.string_list(node, "images", "cluster.bundle")
    images = [] if images is Missing else images
    for i, image in enumerate(images):
        if not IMAGE_RE.fullmatch(image):
            r.error(r.value_loc(node["images"], i) if isinstance(node["images"], list) else r.value_loc(node, "images"),
                    f"cluster.bundle.images[{i}]: not an image reference: {image!r}")  # fmt: skip
    insecure = r.string_list(node, "insecure_registries", "cluster.bundle")
    insecure = [] if insecure is Missing else insecure
    for i, registry in enumerate(insecure):
        if not REGISTRY_RE.fullmatch(registry):
            r.error(r.value_loc(node, "insecure_registries"), f"cluster.bundle.insecure_registries[{i}]: "
                    f"expected host[:port], got {registry!r}")  # fmt: skip
    python = r.string_list(node, "python", "cluster.bundle")
    python = [] if python is Missing else python
    raw = node.get("python")
    for i, version in enumerate(python):
        if isinstance(raw, list) and isinstance(raw[i], float):
            r.error(r.value_loc(node, "python"), f'cluster.bundle.python[{i}]: quote the version ("{version}" '
                    "as a YAML number loses trailing zeros: 3.10 reads as 3.1)")  # fmt: skip
        elif not PYTHON_RE.fullmatch(version):
            r.error(r.value_loc(node, "python"), f"cluster.bundle.python[{i}]: expected a version like \"3.11\", got {version!r}")  # fmt: skip
    return BundleSpec(
        targets=targets,
        mirror_os=mirror_os,
        images=tuple(images),
        models=_models(r, node, base),
        python=tuple(python),
        insecure_registries=tuple(insecure),
        location=r.key_loc(cnode, "bundle"),
    )
