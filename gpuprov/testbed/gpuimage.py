"""TEST BED: the GPU test image `gpuprov verify` runs, and a registry that serves it.

The image is built offline from a test bed rootfs with umoci: only what the stand-in
`nvidia-smi` runs on (python3 with its standard library, and the shared libraries they
load). Everything NVIDIA comes from the host through CDI at `docker/podman run
--device nvidia.com/gpu=all`, as on a real site: the driver's binaries and libraries,
and (stand-ins only) the simulated driver's state. Cached per suite under the test bed
cache, built in a temporary directory and renamed into place.

`Registry` runs Debian's docker-registry (plain HTTP, a throwaway store) on an address the
test VMs reach; `push` copies the image into it with skopeo and returns the reference by
digest (`host:port/gpuprov/verify@sha256:...`), the way verify pulls it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from gpuprov.testbed.rootfs import _key, _locked, cache_dir, ensure_rootfs

TAG = "verify"
REPOSITORY = "gpuprov/verify"
# Parts of the standard library a command-line program never imports.
_STDLIB_SKIP = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data"}
_LIB = re.compile(r"\s*(?:\S+ => )?(/\S+) \(0x[0-9a-f]+\)")


def _run(argv: list[str], timeout: float = 300) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])}: exit {proc.returncode}: {proc.stderr[-1500:]}")
    return proc.stdout


def _copy(rootfs: Path, stage: Path, path: str) -> None:
    """`path` (absolute in the rootfs) into the stage, links kept as links, their targets
    copied too (so /usr/bin/python3 -> python3.13 brings both)."""
    src = rootfs / path.lstrip("/")
    dst = stage / path.lstrip("/")
    if dst.exists() or dst.is_symlink():
        return
    parent = os.path.realpath(src.parent)
    if parent != str(src.parent):  # /lib64/ld-linux...: the same name in the link's target
        real_parent = "/" + os.path.relpath(parent, os.path.realpath(rootfs))
        _copy(rootfs, stage, f"{real_parent}/{src.name}")
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_symlink():
        target = os.readlink(src)
        os.symlink(target, dst)
        resolved = os.path.normpath(os.path.join(os.path.dirname(path), target))
        _copy(rootfs, stage, resolved)
    elif src.is_dir():
        shutil.copytree(src, dst, symlinks=True, ignore=_skip_stdlib)
    else:
        shutil.copy2(src, dst)


def _skip_stdlib(directory: str, names: list[str]) -> set[str]:
    return {n for n in names if n in _STDLIB_SKIP or n == "__pycache__" or n.endswith("-packages")}


def _stage(rootfs: Path, stage: Path) -> None:
    # Merged /usr: the top-level links the loader's path (/lib64/ld-linux...) goes through.
    # Only the links: their targets fill in with what is copied below.
    for top in ("bin", "sbin", "lib", "lib64"):
        if (rootfs / top).is_symlink():
            os.symlink(os.readlink(rootfs / top), stage / top)
    python = os.path.realpath(rootfs / "usr/bin/python3")
    version = Path(python).name  # python3.13
    _copy(rootfs, stage, "/usr/bin/python3")
    _copy(rootfs, stage, f"/usr/lib/{version}")
    # Shared libraries of the interpreter and its extension modules, as the rootfs's own
    # loader resolves them (ldd in a chroot of it).
    modules = sorted(p.name for p in (rootfs / f"usr/lib/{version}/lib-dynload").glob("*.so"))
    targets = [f"/usr/bin/{version}", *(f"/usr/lib/{version}/lib-dynload/{m}" for m in modules)]
    out = _run(["chroot", str(rootfs), "/usr/bin/ldd", *targets])
    for line in out.splitlines():
        m = _LIB.match(line)
        if m:
            _copy(rootfs, stage, m.group(1))
    for d in ("tmp", "etc", "usr/lib/x86_64-linux-gnu"):
        (stage / d).mkdir(parents=True, exist_ok=True)
    (stage / "tmp").chmod(0o1777)


def ensure_gpu_image(suite: str = "trixie") -> Path:
    """An OCI image layout (tag `verify`) of the GPU test image for `suite`'s rootfs."""
    rootfs = ensure_rootfs(suite=suite)
    base = cache_dir()
    final = base / f"gpuimage-{suite}-{_key(suite)}"
    if (final / "index.json").exists():
        return final
    with _locked(base / f"gpuimage-{_key(suite)}.lock"):
        if (final / "index.json").exists():
            return final
        work = Path(tempfile.mkdtemp(prefix=".gpuimage-", dir=base))
        try:
            stage, layout = work / "stage", work / "layout"
            stage.mkdir()
            _stage(rootfs, stage)
            for args in (
                ["init", "--layout", str(layout)],
                ["new", "--image", f"{layout}:{TAG}"],
                ["insert", "--image", f"{layout}:{TAG}", str(stage), "/"],
                ["config", "--image", f"{layout}:{TAG}", "--config.env", "PATH=/usr/bin:/bin",
                 "--config.cmd", "nvidia-smi", "--config.cmd", "-L"],
                ["gc", "--layout", str(layout)],
            ):  # fmt: skip
                _run(["umoci", *args])
            os.rename(layout, final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return final


class Registry:
    """docker-registry on `address` (a free port), serving a throwaway store; a context
    manager. `url` is host:port, as image references and the mirror settings name it."""

    def __init__(self, address: str, workdir: Path) -> None:
        self.address = address
        self.workdir = workdir
        self.port = _free_port(address)
        self.url = f"{address}:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Registry:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "registry.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
            f"    rootdirectory: {self.workdir / 'store'}\n"
            f"http:\n  addr: {self.url}\n"
        )
        log = open(self.workdir / "registry.log", "ab")  # noqa: SIM115 (the child owns it)
        self.proc = subprocess.Popen(
            ["docker-registry", "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex((self.address, self.port)) == 0:
                    return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.__exit__(None, None, None)
        raise RuntimeError(f"docker-registry did not listen on {self.url}: {self.workdir}")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def push(self, layout: Path, repository: str = REPOSITORY) -> str:
        """The image at `layout` into this registry; its reference by digest."""
        digest_file = self.workdir / "digest"
        with contextlib.suppress(FileNotFoundError):
            digest_file.unlink()
        _run(
            ["skopeo", "copy", "--quiet", "--dest-tls-verify=false",
             "--digestfile", str(digest_file),
             f"oci:{layout}:{TAG}", f"docker://{self.url}/{repository}:{TAG}"],
        )  # fmt: skip
        digest = digest_file.read_text().strip()
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            raise RuntimeError(f"skopeo wrote no digest for {repository}: {digest[:80]!r}")
        return f"{self.url}/{repository}@{digest}"


def _free_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]
