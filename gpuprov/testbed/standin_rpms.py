"""Stand-in RPM repositories for the RHEL 9 bundle tests: real RPMs (rpmbuild) with Red Hat's
and NVIDIA's RHEL 9 names, versions and dependency shape (data: standins/rpms.yaml), signed
with `rpmsign`, published with `createrepo_c`, NVIDIA's driver module added with
`modifyrepo_c` and repomd.xml signed (repomd.xml.asc), as a dnf host with
`gpgcheck=1` and `repo_gpgcheck=1` expects of a real upstream.

The unsigned RPMs are cached by content hash under the test bed cache (like the .deb
stand-ins); the signing key is each test session's own, so signing happens per repository
copy, never in the cache.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from gpuprov.errors import GpuprovError

SOURCE_DATE_EPOCH = 1735689600  # 2025-01-01T00:00:00Z, as the .deb stand-ins
TOOL_TIMEOUT_S = 300
TOOLS = ("rpmbuild", "rpmsign", "createrepo_c", "modifyrepo_c", "gpg")


@dataclass(frozen=True)
class RpmSpec:
    name: str
    version: str
    release: str
    epoch: int | None = None
    arch: str = "x86_64"
    summary: str = ""
    requires: tuple[str, ...] = ()
    provides: tuple[str, ...] = ()

    @property
    def evr(self) -> str:
        return (
            f"{self.epoch}:{self.version}-{self.release}"
            if self.epoch
            else f"{self.version}-{self.release}"
        )

    @property
    def nevra(self) -> str:
        """name-epoch:version-release.arch, as modulemd artifacts list them."""
        return f"{self.name}-{self.epoch or 0}:{self.version}-{self.release}.{self.arch}"

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}-{self.release}.{self.arch}.rpm"


@dataclass
class RepoSpec:
    name: str
    packages: list[RpmSpec] = field(default_factory=list)
    modules_yaml: str | None = None


@cache
def _data() -> dict[str, Any]:
    from ruamel.yaml import YAML

    text = resources.files("gpuprov.testbed.standins").joinpath("rpms.yaml").read_text("utf-8")
    return YAML(typ="safe").load(text)


def label() -> str:
    return str(_data()["label"])


def _spec(item: dict[str, Any], **subst: str) -> RpmSpec:
    def fill(s: str) -> str:
        return s.format(**subst) if subst else s

    return RpmSpec(
        name=item["name"],
        version=fill(str(item.get("version", "{version}"))),
        release=str(item["release"]),
        epoch=item.get("epoch"),
        arch=item.get("arch", "x86_64"),
        summary=item.get("summary", item["name"]),
        requires=tuple(fill(r) for r in item.get("requires", ())),
        provides=tuple(fill(p) for p in item.get("provides", ())),
    )


def repo_specs(releases: tuple[str, ...] | None = None) -> list[RepoSpec]:
    """The two upstream repositories, with every driver release's packages and the
    driver module's streams (modules.yaml text) in the NVIDIA one."""
    data = _data()
    releases = tuple(releases or data["driver_releases"])
    out = []
    for name, repo in data["repos"].items():
        spec = RepoSpec(name, [_spec(p) for p in repo.get("packages", ())])
        driver: dict[str, list[RpmSpec]] = {}
        for version in releases:
            branch = version.split(".")[0]
            for item in repo.get("driver_packages", ()):
                pkg = _spec(item, version=version, branch=branch)
                spec.packages.append(pkg)
                driver.setdefault(branch, []).append(pkg)
        if "module" in repo:
            spec.modules_yaml = _modules_yaml(repo["module"], driver)
        out.append(spec)
    return out


def _modules_yaml(module: dict[str, Any], driver: dict[str, list[RpmSpec]]) -> str:
    """modulemd v2 documents, one per stream, as NVIDIA's genmodules.py writes them:
    profiles name packages, artifacts list every NEVRA of the branch."""
    docs = []
    for branch, pkgs in sorted(driver.items()):
        for stream_tpl in module["streams"]:
            stream = stream_tpl.format(branch=branch)
            lines = [
                "---",
                "document: modulemd",
                "version: 2",
                "data:",
                f"  name: {module['name']}",
                f'  stream: "{stream}"',
                "  version: 20250101000000",
                "  context: 00000000",
                "  arch: x86_64",
                f"  summary: Nvidia driver for {stream} branch",
                f"  description: {label()}",
                "  license:",
                "    module: [MIT]",
                "  profiles:",
            ]
            for profile, names in module["profiles"].items():
                lines += [f"    {profile}:", "      rpms:"] + [f"        - {n}" for n in names]
            lines += ["  artifacts:", "    rpms:"]
            lines += [f"      - {p.nevra}" for p in sorted(pkgs, key=lambda p: p.nevra)]
            docs.append("\n".join(lines) + "\n...\n")
    return "".join(docs)


def spec_text(spec: RpmSpec) -> str:
    lines = [
        f"Name: {spec.name}",
        *([f"Epoch: {spec.epoch}"] if spec.epoch else []),
        f"Version: {spec.version}",
        f"Release: {spec.release}",
        f"Summary: {label()}: {spec.summary}",
        "License: MIT",
        "URL: https://github.com/gpuprov/gpuprov",
        f"BuildArch: {spec.arch}",
        "AutoReqProv: no",
        *[f"Requires: {r}" for r in spec.requires],
        *[f"Provides: {p}" for p in spec.provides],
        "",
        "%description",
        f"{label()}.",
        "Built by gpuprov's test bed to exercise RHEL bundle builds. It contains no",
        "Red Hat or NVIDIA code and must never be shipped in a real bundle.",
        "",
        "%install",
        f"mkdir -p %{{buildroot}}/usr/share/doc/{spec.name}",
        f"echo '{label()}' > %{{buildroot}}/usr/share/doc/{spec.name}/README.gpuprov",
        "",
        "%files",
        f"/usr/share/doc/{spec.name}/README.gpuprov",
        "",
    ]
    return "\n".join(lines)


def check_tools() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None]


def build_rpm(spec: RpmSpec, out_dir: Path) -> Path:
    """One unsigned RPM, rebuilt only when its spec text changed (a .sha stamp beside it);
    written beside the target and renamed, so a concurrent reader never sees half a file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / spec.filename
    stamp = out_dir / f".{spec.filename}.sha"
    text = spec_text(spec)
    digest = hashlib.sha256(f"{text}\0{SOURCE_DATE_EPOCH}".encode()).hexdigest()[:16]
    if target.exists() and stamp.exists() and stamp.read_text() == digest:
        return target
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(SOURCE_DATE_EPOCH), "TZ": "UTC", "LC_ALL": "C"}
    with tempfile.TemporaryDirectory(prefix="standin-rpm-") as tmp:
        (Path(tmp) / "p.spec").write_text(text)
        done = subprocess.run(
            ["rpmbuild", "-bb", "--quiet", f"--define=_topdir {tmp}/top",
             "--define=_build_id_links none", "--define=__os_install_post %{nil}",
             "--define=use_source_date_epoch_as_buildtime 1",
             "--define=clamp_mtime_to_source_date_epoch 1", f"{tmp}/p.spec"],
            env=env, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S,
        )  # fmt: skip
        built = Path(tmp, "top", "RPMS", spec.arch, spec.filename)
        if done.returncode != 0 or not built.is_file():
            raise GpuprovError(f"rpmbuild failed for {spec.name}: {done.stderr.strip()[-1500:]}")
        fd, partial = tempfile.mkstemp(dir=out_dir, prefix=f".{spec.name}.", suffix=".partial")
        os.close(fd)
        try:
            shutil.copyfile(built, partial)
            os.chmod(partial, 0o644)
            os.replace(partial, target)
        finally:
            Path(partial).unlink(missing_ok=True)
    stamp.write_text(digest)
    return target


def _run(cmd: list[str], what: str, **kw: Any) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, **kw)
    if done.returncode != 0:
        raise GpuprovError(f"{what} failed: {(done.stderr or done.stdout).strip()[-1500:]}")


def sign_rpms(rpms: list[Path], gnupg_home: Path, fingerprint: str) -> None:
    """Sign each RPM's header with the key (rpmsign --addsign: an OpenPGP signature as
    NVIDIA's and Red Hat's packages carry, checked by dnf's gpgcheck=1)."""
    gpg = shutil.which("gpg") or "gpg"
    _run(
        ["rpmsign", "--addsign", f"--define=__gpg {gpg}", f"--define=_gpg_name {fingerprint}",
         f"--define=_gpg_path {gnupg_home}", *map(str, rpms)],
        "rpmsign", stdin=subprocess.DEVNULL,
    )  # fmt: skip


def publish_standin_repos(
    cache: Path, out: Path, gnupg_home: Path, fingerprint: str, releases: tuple[str, ...] | None = None
) -> dict[str, Path]:  # fmt: skip
    """Build (cached) and publish every stand-in repository under out/<repo>/: signed
    RPMs in Packages/, repodata/ with modules where the repo has a module, and
    repodata/repomd.xml.asc. Returns repo name -> directory."""
    missing = check_tools()
    if missing:
        raise GpuprovError(f"not installed: {', '.join(missing)} (make system-deps)")
    dirs = {}
    for repo in repo_specs(releases):
        root = out / repo.name
        (root / "Packages").mkdir(parents=True)
        copies = []
        for spec in repo.packages:
            built = build_rpm(spec, cache / repo.name)
            copy = root / "Packages" / built.name
            shutil.copyfile(built, copy)
            copies.append(copy)
        sign_rpms(copies, gnupg_home, fingerprint)
        _run(["createrepo_c", "--quiet", str(root)], "createrepo_c")
        if repo.modules_yaml is not None:
            with tempfile.TemporaryDirectory(prefix="standin-modules-") as tmp:
                (Path(tmp) / "modules.yaml").write_text(repo.modules_yaml)
                _run(["modifyrepo_c", "--mdtype=modules", str(Path(tmp) / "modules.yaml"),
                      str(root / "repodata")], "modifyrepo_c")  # fmt: skip
        repomd = root / "repodata" / "repomd.xml"
        _run(["gpg", "--homedir", str(gnupg_home), "--batch", "--yes", "--armor",
              "--local-user", fingerprint, "--detach-sign", "--output",
              str(repomd.with_name("repomd.xml.asc")), str(repomd)], "gpg --detach-sign")  # fmt: skip
        dirs[repo.name] = root
    return dirs
