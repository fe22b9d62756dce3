"""What the mirror load benchmark serves, and the servers serving it (all on loopback).

The content is laid out as `gpuprov bundle import` leaves it on a mirror host, under
WORK/srv/bundles/<id>/ instead of /srv/gpuprov/bundles/<id>/:

- apt/debian12/: a real signed apt repository, the test bed's cached Debian .debs
  published by gpuprov.aptrepo;
- oci/: a real image (layers made by umoci from the test bed's Debian rootfs), copied in
  by skopeo under its full reference the way `bundle build` does;
- the registry's storage written from oci/ by gpuprov.mirror.registry_storage (hard
  links), as the mirror role does.

The mirror's services run with the configuration the mirror role renders
(deploys/mirror_server.py: `nginx_conf`, `registry_conf`), with only its absolute paths
moved into WORK (runtime directory, registry root, and the journald socket nginx logs
to, stood in for by a datagram socket drained here). The baseline is nginx with Debian's
default nginx.conf serving the same files directly: the apt tree, and the registry's
blob files at the registry's URL paths, so one client does the same requests against
either.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SUITE = "stable"
APT_PREFIX = "debian12"
IMAGE_REF = "mirror.invalid/bench/debian:12"  # served as bench/debian:12
IMAGE_NAME, IMAGE_TAG = "bench/debian", "12"
BUNDLE_ID = hashlib.sha256(b"gpuprov mirror load benchmark").hexdigest()
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
START_WAIT_S = 30
TOOL_TIMEOUT_S = 600

# Debian 12's /etc/nginx/nginx.conf and sites-available/default, as installed (only the
# paths moved into the work directory).
DEFAULT_NGINX = """\
user www-data;
worker_processes auto;
pid {work}/default-nginx.pid;
error_log {work}/default-nginx-error.log;
daemon off;
events {{ worker_connections 768; }}
http {{
  sendfile on;
  tcp_nopush on;
  types_hash_max_size 2048;
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
  access_log {work}/default-nginx-access.log;
  gzip on;
  client_body_temp_path {work}/default-nginx-tmp;
  server {{
    listen 127.0.0.1:{port} default_server;
    root {root};
    index index.html index.htm index.nginx-debian.html;
    server_name _;
    location / {{ try_files $uri $uri/ =404; }}
  }}
}}
"""


@dataclass(frozen=True)
class Served:
    """A file the clients fetch: URL path, size, sha256."""

    path: str
    size: int
    sha256: str


@dataclass
class AptContent:
    root: Path  # WWW/debian12: the published repository
    keyring: Path  # its public key, for the real apt-get clients' Signed-By
    indexes: list[Served]  # InRelease and Packages*
    debs: list[Served]
    packages: list[str]  # package names, for `apt-get download`


@dataclass
class ImageContent:
    manifest: Served  # /v2/NAME/manifests/TAG
    blobs: list[Served]  # config and layers, /v2/NAME/blobs/sha256:HEX


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _run(cmd: list[str], what: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)
    if done.returncode != 0:
        raise RuntimeError(f"{what}: {' '.join(cmd[:3])} failed: {done.stderr.strip()[-800:]}")


def make_apt_repo(www: Path, debs_dir: Path, key_home: Path) -> AptContent:
    """Publish every cached .deb as one signed suite, the way a bundle's repo is made."""
    from gpuprov.aptrepo import generate_key, publish_repo
    from gpuprov.aptrepo.deb822 import parse_paragraphs

    debs = sorted(debs_dir.glob("*.deb"))
    if not debs:
        raise RuntimeError(f"no .deb files in {debs_dir}: build the test bed rootfs first")
    key = generate_key(key_home, "Bench mirror", "bench@gpuprov.invalid")
    root = www / APT_PREFIX
    publish_repo(debs, root, suite=SUITE, key=key)
    keyring = key.export_public(key_home.parent / "mirror-key.gpg")

    def served(path: Path) -> Served:
        rel = path.relative_to(www).as_posix()
        return Served(f"/{rel}", path.stat().st_size, sha256_of(path))

    dist = root / "dists" / SUITE
    indexes = [served(dist / "InRelease")]
    indexes += [served(p) for p in sorted((dist / "main" / "binary-amd64").glob("Packages*"))]
    paragraphs = parse_paragraphs((dist / "main" / "binary-amd64" / "Packages").read_text())
    files = [
        Served(f"/{APT_PREFIX}/{p['Filename']}", int(p["Size"]), p["SHA256"]) for p in paragraphs
    ]
    names = sorted({p["Package"] for p in paragraphs if p.get("Architecture") == "amd64"})
    return AptContent(root, keyring, indexes, files, names)


def make_image(work: Path, rootfs: Path, dirs: list[str], oci: Path) -> None:
    """One image whose layers are directories of a Debian rootfs, into the bundle's OCI
    layout under its full reference (skopeo, as gpuprov/bundle/images.py puts it there)."""
    layout = work / "image"
    ref = f"{layout}:{IMAGE_TAG}"
    _run(["umoci", "init", "--layout", str(layout)], "umoci init")
    _run(["umoci", "new", "--image", ref], "umoci new")
    for rel in dirs:
        _run(["umoci", "insert", "--image", ref, str(rootfs / rel), f"/{rel}"], f"layer {rel}")
    _run(["skopeo", "copy", "--quiet", f"oci:{ref}", f"oci:{oci}:{IMAGE_REF}"], "skopeo copy")
    shutil.rmtree(layout)


class Mirror:
    """The mirror host's apt nginx and docker-registry, configured by the mirror role."""

    def __init__(self, work: Path):
        from gpuprov.deploys.mirror_server import BundlePaths

        self.work = work
        self.bundle = BundlePaths(BUNDLE_ID, root=str(work / "srv"))
        self.registry_root = work / "registry"
        self.apt_port, self.registry_port = free_port(), free_port()
        self.apt_url = f"http://127.0.0.1:{self.apt_port}"
        self.registry_url = f"http://127.0.0.1:{self.registry_port}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.journal: socket.socket | None = None
        self.journal_lines = 0  # access-log lines nginx sent to the journal socket

    def fill_registry(self) -> ImageContent:
        from gpuprov.mirror.registry_storage import write_storage

        write_storage(Path(self.bundle.oci), self.registry_root / BUNDLE_ID)
        index = json.loads((Path(self.bundle.oci) / "index.json").read_text())
        top = index["manifests"][0]["digest"].removeprefix("sha256:")
        body = (Path(self.bundle.oci) / "blobs/sha256" / top).read_bytes()
        doc = json.loads(body)
        return ImageContent(
            Served(f"/v2/{IMAGE_NAME}/manifests/{IMAGE_TAG}", len(body), top),
            [
                Served(f"/v2/{IMAGE_NAME}/blobs/{d['digest']}", int(d["size"]), d["digest"][7:])
                for d in [doc["config"], *doc["layers"]]
            ],
        )

    def start(self) -> None:
        from gpuprov.deploys.mirror_server import (
            APT_RUNTIME,
            ModelsSecurity,
            nginx_conf,
            registry_conf,
        )

        from gpuprov.inventory.model import MirrorRef
        from gpuprov.paths import MIRROR_REGISTRY_ROOT

        ref = MirrorRef("mirror", apt_port=self.apt_port, registry_port=self.registry_port)
        runtime = self.work / "run-apt"
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (runtime / sub).mkdir(parents=True, exist_ok=True)
        journal = self.work / "journal.sock"
        conf = nginx_conf(ref, self.bundle, "127.0.0.1")
        conf = conf.replace(APT_RUNTIME, str(runtime))
        conf = conf.replace("unix:/dev/log", f"unix:{journal}")
        (self.work / "nginx-apt.conf").write_text(conf)
        self._drain_journal(journal)
        yml = registry_conf(ref, self.bundle, "127.0.0.1", ModelsSecurity())
        (self.work / "registry.yml").write_text(
            yml.replace(MIRROR_REGISTRY_ROOT, str(self.registry_root))
        )

        log = open(self.work / "mirror-nginx.log", "ab")  # noqa: SIM115 - owned by the process
        self.procs.append(subprocess.Popen(
            [NGINX, "-c", str(self.work / "nginx-apt.conf"), "-p", str(runtime)],
            stdout=log, stderr=log))  # fmt: skip
        log.close()
        wait_http(f"{self.apt_url}/{APT_PREFIX}/dists/{SUITE}/InRelease", self.procs[-1],
                  self.work / "mirror-nginx.log")  # fmt: skip
        log = open(self.work / "registry.log", "ab")  # noqa: SIM115 - owned by the process
        self.procs.append(subprocess.Popen(
            ["docker-registry", "serve", str(self.work / "registry.yml")], stdout=log, stderr=log))  # fmt: skip
        log.close()
        wait_http(f"{self.registry_url}/v2/", self.procs[-1], self.work / "registry.log")

    def _drain_journal(self, path: Path) -> None:
        """A datagram socket where journald's would be: nginx sends one line per request."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(path))
        path.chmod(0o666)
        self.journal = sock

        def drain() -> None:
            try:
                while sock.recv(65536):
                    self.journal_lines += 1
            except OSError:
                pass  # closed at stop()

        threading.Thread(target=drain, name="journal", daemon=True).start()

    def blob_file(self, sha256: str) -> Path:
        root = self.registry_root / BUNDLE_ID / "docker/registry/v2/blobs/sha256"
        return root / sha256[:2] / sha256 / "data"

    def stop(self) -> None:
        for proc in self.procs:
            stop(proc)
        self.procs.clear()
        if self.journal is not None:
            self.journal.close()
            self.journal = None


def baseline_tree(www: Path, mirror: Mirror, image: ImageContent) -> None:
    """The same files for the default nginx: the apt tree and the registry's URL paths
    (hard links to the registry's blobs, the manifest as the registry serves it)."""
    (www / APT_PREFIX).symlink_to(Path(mirror.bundle.apt) / APT_PREFIX)
    name = www / "v2" / IMAGE_NAME
    (name / "blobs").mkdir(parents=True)
    (name / "manifests").mkdir()
    (www / "v2" / "index.html").write_text("{}")
    for blob in image.blobs:
        os.link(mirror.blob_file(blob.sha256), www / blob.path.lstrip("/"))
    request = urllib.request.Request(
        f"{mirror.registry_url}{image.manifest.path}", headers={"Accept": OCI_MANIFEST}
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        body = resp.read()
    if hashlib.sha256(body).hexdigest() != image.manifest.sha256:
        raise RuntimeError("the registry serves another manifest than the OCI layout holds")
    (www / image.manifest.path.lstrip("/")).write_bytes(body)


def start_default_nginx(work: Path, root: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    (work / "default-nginx-tmp").mkdir(exist_ok=True)
    conf = work / "default-nginx.conf"
    conf.write_text(DEFAULT_NGINX.format(work=work, port=port, root=root))
    proc = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(work)], stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/{APT_PREFIX}/dists/{SUITE}/InRelease", proc, work / "default-nginx-error.log")
    return proc, url


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, its threads and its live children (nginx's
    workers), from /proc: what serving cost, whatever else the machine was doing."""
    tick = os.sysconf("SC_CLK_TCK")
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return own + sum(cpu_seconds(int(c)) for c in children)


def readable(tree: Path) -> None:
    """nginx workers run unprivileged (the mirror's as its service user): let them read."""
    for directory, _, files in os.walk(tree):
        os.chmod(directory, 0o755)
        for name in files:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode | 0o444)


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_WAIT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: server exited ({proc.returncode}); see {log}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                resp.read()
            return
        except OSError:
            time.sleep(0.1)
    stop(proc)
    raise RuntimeError(f"{url}: no answer within {START_WAIT_S} s; see {log}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
