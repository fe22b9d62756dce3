"""What the mirror load benchmark serves, and the servers serving it (all on loopback).

- a real signed apt repository: the test bed's cached Debian .debs published by
  gpuprov.aptrepo, under WWW/debian12/;
- a real image: layers made by umoci from the test bed's Debian rootfs, pushed with
  skopeo into a Debian `docker-registry`, which then serves it read-only (pull-only, as
  the mirror host runs it);
- nginx with the mirror host's apt site (MIRROR_SITE below, until the mirror role's
  rendered site replaces it) and nginx with Debian's default nginx.conf serving the
  same files directly: the apt repo, and the registry's blob files hard-linked at the
  registry's URL paths, so one client does the same requests against either.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SUITE = "stable"
APT_PREFIX = "debian12"
IMAGE_NAME, IMAGE_TAG = "bench/debian", "12"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
START_WAIT_S = 30
TOOL_TIMEOUT_S = 600

# The mirror host's apt site: static files, sendfile, big open-file cache, no per-request
# log line to disk (journald gets errors only), keep-alive for apt's pipelined fetches.
MIRROR_SITE = """\
{user}
worker_processes auto;
worker_rlimit_nofile 65536;
pid {work}/mirror-nginx.pid;
error_log {work}/mirror-nginx-error.log warn;
daemon off;
events {{ worker_connections 8192; multi_accept on; }}
http {{
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  sendfile_max_chunk 2m;
  keepalive_requests 10000;
  open_file_cache max=10000 inactive=60s;
  open_file_cache_valid 60s;
  access_log off;
  server_tokens off;
  types {{ }}
  default_type application/octet-stream;
  client_body_temp_path {work}/mirror-nginx-tmp;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    root {root};
    autoindex off;
    location / {{ return 404; }}
    location /{prefix}/ {{ try_files $uri =404; }}
  }}
}}
"""

# Debian 12's /etc/nginx/nginx.conf and sites-available/default, as installed (only the
# paths moved into the work directory and the user made able to read it).
DEFAULT_NGINX = """\
{user}
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

REGISTRY_CONFIG = """\
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: false
  maintenance:
    uploadpurging:
      enabled: false
    readonly:
      enabled: {readonly}
http:
  addr: 127.0.0.1:{port}
  headers:
    X-Content-Type-Options: [nosniff]
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
    keyring = key.export_public(www.parent / "mirror-key.gpg")

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


def make_image(work: Path, rootfs: Path, dirs: list[str]) -> Path:
    """An OCI layout holding one image whose layers are directories of a Debian rootfs."""
    layout = work / "image"
    ref = f"{layout}:{IMAGE_TAG}"
    _run(["umoci", "init", "--layout", str(layout)], "umoci init")
    _run(["umoci", "new", "--image", ref], "umoci new")
    for rel in dirs:
        _run(["umoci", "insert", "--image", ref, str(rootfs / rel), f"/{rel}"], f"layer {rel}")
    return layout


class Registry:
    """A Debian docker-registry on loopback; read-only once filled."""

    def __init__(self, work: Path):
        self.work = work
        self.storage = work / "registry"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, readonly: bool) -> None:
        config = self.work / "registry.yml"
        config.write_text(
            REGISTRY_CONFIG.format(
                storage=self.storage, port=self.port, readonly=str(readonly).lower()
            )
        )
        log = open(self.work / "registry.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            ["docker-registry", "serve", str(config)], stdout=log, stderr=log
        )
        log.close()
        wait_http(f"{self.url}/v2/", self.proc, self.work / "registry.log")

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None

    def fill(self, layout: Path) -> ImageContent:
        """Push the image (the registry writable), then restart it read-only."""
        self.start(readonly=False)
        dest = f"docker://127.0.0.1:{self.port}/{IMAGE_NAME}:{IMAGE_TAG}"
        _run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false",
              f"oci:{layout}:{IMAGE_TAG}", dest], "skopeo copy")  # fmt: skip
        self.stop()
        self.start(readonly=True)
        url = f"{self.url}/v2/{IMAGE_NAME}/manifests/{IMAGE_TAG}"
        request = urllib.request.Request(url, headers={"Accept": OCI_MANIFEST})
        with urllib.request.urlopen(request, timeout=30) as resp:
            body = resp.read()
        doc = json.loads(body)
        manifest = Served(
            f"/v2/{IMAGE_NAME}/manifests/{IMAGE_TAG}", len(body), hashlib.sha256(body).hexdigest()
        )
        blobs = [
            Served(f"/v2/{IMAGE_NAME}/blobs/{d['digest']}", int(d["size"]), d["digest"][7:])
            for d in [doc["config"], *doc["layers"]]
        ]
        return ImageContent(manifest, blobs)

    def blob_file(self, sha256: str) -> Path:
        return self.storage / "docker/registry/v2/blobs/sha256" / sha256[:2] / sha256 / "data"


def registry_tree(www: Path, registry: Registry, image: ImageContent) -> None:
    """The registry's URL paths as static files (hard links to its blobs) for nginx."""
    name = www / "v2" / IMAGE_NAME
    (name / "blobs").mkdir(parents=True)
    (name / "manifests").mkdir()
    (www / "v2" / "index.html").write_text("{}")
    for blob in image.blobs:
        os.link(registry.blob_file(blob.sha256), www / blob.path.lstrip("/"))
    request = urllib.request.Request(
        f"{registry.url}{image.manifest.path}", headers={"Accept": OCI_MANIFEST}
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        (www / image.manifest.path.lstrip("/")).write_bytes(resp.read())


def start_nginx(
    work: Path, template: str, name: str, root: Path
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    user = "user root;" if os.geteuid() == 0 else ""
    (work / f"{name}-nginx-tmp").mkdir(exist_ok=True)
    conf = work / f"{name}-nginx.conf"
    conf.write_text(template.format(user=user, work=work, port=port, root=root, prefix=APT_PREFIX))
    proc = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(work)], stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/{APT_PREFIX}/dists/{SUITE}/InRelease", proc, work / f"{name}-nginx-error.log")
    return proc, url


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
