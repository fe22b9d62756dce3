"""Build the stand-in .debs with dpkg-deb, byte-for-byte reproducibly, cached by content hash."""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

from gpuprov.errors import GpuprovError

from .catalog import LABEL, MAINTAINER, PackageSpec, all_specs

# Fixed timestamp for every file and the ar/tar headers (reproducible builds).
SOURCE_DATE_EPOCH = 1735689600  # 2025-01-01T00:00:00Z


def _program_text(name: str) -> str:
    return resources.files(__package__).joinpath("programs", name).read_text()


def _subst(text: str, pairs: tuple[tuple[str, str], ...]) -> str:
    for key, value in pairs:
        text = text.replace(key, value)
    return text


def control_text(spec: PackageSpec, installed_size_kb: int) -> str:
    fields = [
        ("Package", spec.name),
        ("Version", spec.version),
        ("Architecture", spec.architecture),
        ("Maintainer", MAINTAINER),
        ("Installed-Size", str(installed_size_kb)),
        ("Essential", "yes" if spec.essential else ""),
        ("Multi-Arch", spec.multi_arch),
        ("Pre-Depends", ", ".join(spec.pre_depends)),
        ("Depends", ", ".join(spec.depends)),
        ("Breaks", ", ".join(spec.breaks)),
        ("Conflicts", ", ".join(spec.conflicts)),
        ("Replaces", ", ".join(spec.replaces)),
        ("Provides", ", ".join(spec.provides)),
        ("Section", spec.section),
        ("Priority", spec.priority),
        ("Homepage", "https://github.com/gpuprov/gpuprov (test fixture)"),
    ]
    lines = [f"{k}: {v}" for k, v in fields if v]
    lines.append(f"Description: {LABEL}: {spec.summary}")
    lines.append(f" {LABEL}.")
    lines.append(" Built by gpuprov's test bed to exercise provisioning against a simulated GPU")
    lines.append(" profile. It contains no NVIDIA code and must never be shipped in a bundle.")
    return "\n".join(lines) + "\n"


def _stage(spec: PackageSpec, root: Path) -> None:
    for f in spec.files:
        dest = root / f.path
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(_subst(_program_text(f.source), f.subst))
        dest.chmod(f.mode)
    for path, target in spec.symlinks.items():
        dest = root / path
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.symlink_to(target)
    doc = root / "usr/share/doc" / spec.name
    doc.mkdir(parents=True, exist_ok=True)
    (doc / "README.gpuprov").write_text(f"{LABEL}.\n")
    size_kb = (
        sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink()) // 1024
        + 1
    )
    debian = root / "DEBIAN"
    debian.mkdir()
    (debian / "control").write_text(control_text(spec, size_kb))
    for script, source in spec.scripts.items():
        (debian / script).write_text(_subst(_program_text(source), spec.script_subst))
        (debian / script).chmod(0o755)
    if spec.conffiles:
        (debian / "conffiles").write_text("".join(c + "\n" for c in spec.conffiles))
    for p in [root, *root.rglob("*")]:
        if not p.is_symlink():
            p.chmod(0o755 if p.is_dir() or p.stat().st_mode & 0o100 else 0o644)
        os.utime(p, (SOURCE_DATE_EPOCH, SOURCE_DATE_EPOCH), follow_symlinks=False)


def _spec_digest(spec: PackageSpec) -> str:
    """Hash of everything that goes into the .deb, so a cached file is reused only if identical."""
    h = hashlib.sha256()
    h.update(control_text(spec, 0).encode())
    for f in spec.files:
        h.update(f"{f.path}\0{f.mode}\0{f.subst}\0".encode())
        h.update(_program_text(f.source).encode())
    for script, source in sorted(spec.scripts.items()):
        h.update(f"{script}\0{spec.script_subst}\0".encode())
        h.update(_program_text(source).encode())
    h.update(repr(sorted(spec.symlinks.items())).encode())
    h.update(repr(spec.conffiles).encode())
    h.update(str(SOURCE_DATE_EPOCH).encode())
    return h.hexdigest()[:16]


def build_package(spec: PackageSpec, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / spec.filename
    stamp = out_dir / f".{spec.filename}.sha"
    digest = _spec_digest(spec)
    if target.exists() and stamp.exists() and stamp.read_text() == digest:
        return target
    env = {
        **os.environ,
        "SOURCE_DATE_EPOCH": str(SOURCE_DATE_EPOCH),
        "TZ": "UTC",
        "LC_ALL": "C.UTF-8",
    }
    with tempfile.TemporaryDirectory(prefix="standin-") as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        _stage(spec, root)
        # Built beside the target, then renamed: atomic, so a concurrent reader (another test
        # process sharing the cache) never sees half a .deb.
        fd, partial_name = tempfile.mkstemp(dir=out_dir, prefix=f".{spec.name}.", suffix=".partial")
        os.close(fd)
        partial = Path(partial_name)
        try:
            proc = subprocess.run(
                ["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(partial)],
                env=env,
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                raise GpuprovError(f"dpkg-deb failed for {spec.name}: {proc.stderr.strip()}")
            partial.chmod(0o644)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
    stamp.write_text(digest)
    return target


def build_standins(
    out_dir: Path, releases: tuple[str, ...] = ("570.133.20", "580.95.05")
) -> list[Path]:
    """Build every stand-in package for the driver releases into out_dir; return the sorted paths."""
    return sorted(build_package(spec, Path(out_dir)) for spec in all_specs(tuple(releases)))
