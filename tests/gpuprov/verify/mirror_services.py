"""The mirror host's three services, real, on loopback: nginx (the mirror host's own
configuration template) serving a bundle's apt/ tree, Debian's docker-registry filled by skopeo from the bundle's OCI layout, and
`gpuprov mirror serve` on its model store; plus the bundle directory they serve (a real
signed apt repository, an OCI layout made offline with umoci, a model store, a manifest
written by the bundle layout code)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from oci_images import tiny_image_layout

from gpuprov.aptrepo import SigningKey, generate_key, publish_repo
from gpuprov.bundle.layout import scan_tree, write_manifest
from gpuprov.mirror.sample import build_tiny_dataset
from gpuprov.mirror.store import add_model
from gpuprov.rendering import render

TOOLS = ("nginx", "docker-registry", "skopeo", "umoci", "gpgv", "dpkg-deb", "apt-get")
IMAGE_REF = "nvcr.io/gpuprov-test/tiny:1.0"
MODEL = "acme/tiny-data"


def missing_tools() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(
    port: int, proc: subprocess.Popen, log: Path, timeout: float = 30.0, address: str = "127.0.0.1"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited {proc.returncode}: {log.read_text()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex((address, port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} not open after {timeout} s: {log.read_text()[-2000:]}")


def build_deb(work: Path, name: str) -> Path:
    root = work / f"src-{name}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: 1.0-1\nArchitecture: all\n"
        "Maintainer: gpuprov tests <tests@gpuprov.invalid>\nDescription: test package\n x\n"
    )
    out = work / f"{name}_1.0-1_all.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(out)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return out


@dataclass
class Bundle:
    dir: Path
    key: SigningKey
    keyring: Path  # the trusted bundle keyring
    other_keyring: Path  # a key that signed nothing here


def build_bundle(work: Path) -> Bundle:
    """A bundle directory as `gpuprov bundle build` lays it out (apt/debian12 signed with
    the bundle key, oci/ with one image under its full reference, models/ a store)."""
    key = generate_key(work / "bundle-gnupg", "Site bundles", "bundle@gpuprov.invalid")
    other = generate_key(work / "other-gnupg", "Someone else", "other@gpuprov.invalid")
    bundle = work / "bundle"
    deb = build_deb(work, "gpuprov-mirror-test")
    publish_repo([deb], bundle / "apt" / "debian12", suite="gpuprov", key=key)
    img = tiny_image_layout(work, "hello from the mirror\n")
    subprocess.run(
        ["skopeo", "copy", "--quiet", f"oci:{img}:latest", f"oci:{bundle / 'oci'}:{IMAGE_REF}"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    add_model(build_tiny_dataset(work / "dataset"), bundle / "models", MODEL, repo_type="dataset")
    shutil.rmtree(bundle / "models" / "tmp", ignore_errors=True)  # staging, never served
    write_manifest(bundle, scan_tree(bundle))
    return Bundle(
        bundle, key, key.export_public(work / "bundle.gpg"), other.export_public(work / "other.gpg")
    )


@dataclass
class Services:
    apt_port: int
    registry_port: int
    models_port: int
    address: str = "127.0.0.1"
    prefix: list[str] = field(default_factory=list)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)


def _start(services: Services, name: str, argv: list[str], work: Path, port: int) -> None:
    log = work / f"{name}.log"
    handle = log.open("w")
    argv = [*services.prefix, *argv]
    proc = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    handle.close()
    services.procs[name], services.logs[name] = proc, log
    wait_port(port, proc, log, address=services.address)


def start_services(
    bundle: Path, work: Path, address: str = "127.0.0.1", netns: str | None = None
) -> Services:
    """The three services on `address`; in network namespace `netns` when given (a light
    host's: then they answer at that host's address, as on a real mirror host)."""
    s = Services(free_port(), free_port(), free_port(), address=address)
    if netns:
        s.prefix = ["ip", "netns", "exec", netns]
    try:
        # nginx with the mirror host's own configuration (deploys/mirror_server.py renders
        # it from the same template). Two changes for a test: workers run as root (pytest's
        # scratch tree is root's, mode 0700), and no syslog socket for the access log.
        prefix = work / "nginx"
        prefix.mkdir(parents=True, exist_ok=True)
        text = render(
            "gpuprov-apt-nginx.conf.j2",
            listen=f"{address}:{s.apt_port}",
            root=bundle / "apt",
            bundle=bundle,
            runtime=prefix,
        )
        syslog = "access_log syslog:server=unix:/dev/log,nohostname,tag=gpuprov_apt combined;"
        assert syslog in text
        text = "user root;\n" + text.replace(syslog, "access_log off;")
        (prefix / "nginx.conf").write_text(text)
        nginx = ["nginx", "-e", "stderr", "-p", str(prefix), "-c", str(prefix / "nginx.conf")]
        _start(s, "nginx", nginx, work, s.apt_port)

        (work / "registry.yml").write_text(
            f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {work / 'registry'}\n"
            f"http:\n  addr: {address}:{s.registry_port}\n"
        )
        _start(
            s,
            "registry",
            ["docker-registry", "serve", str(work / "registry.yml")],
            work,
            s.registry_port,
        )
        subprocess.run(
            ["skopeo", "copy", "--quiet", "--dest-tls-verify=false",
             f"oci:{bundle / 'oci'}:{IMAGE_REF}",
             f"docker://{address}:{s.registry_port}/gpuprov-test/tiny:1.0"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip

        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        argv = [sys.executable, "-m", "gpuprov.cli", "mirror", "serve", "--store", str(bundle / "models"),
                "--host", address, "--port", str(s.models_port)]  # fmt: skip
        log = work / "models.log"
        with log.open("w") as handle:
            proc = subprocess.Popen(
                [*s.prefix, *argv], stdout=handle, stderr=subprocess.STDOUT, env=env
            )
        s.procs["models"], s.logs["models"] = proc, log
        wait_port(s.models_port, proc, log, address=address)
    except BaseException:
        s.stop_all()
        raise
    return s
