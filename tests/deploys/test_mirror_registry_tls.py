"""The mirror host's container registry with TLS from the site CA, proven with real clients:
Debian's docker-registry runs on loopback with the configuration the mirror host gets
(`registry_conf` with `gpuprov_mirror_tls_cert`/`_key`), serving storage written from a
real OCI layout; `curl --cacert` and `skopeo --cert-dir` with the site CA get `/v2/` and
the image's manifest by digest, and the same clients without the CA, or with another CA,
refuse the server's certificate."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from gpuprov.deploys.mirror_server import BundlePaths, ModelsSecurity, registry_conf
from registries import docker_registry

from gpuprov.inventory.model import MirrorRef
from gpuprov.mirror.registry_storage import write_storage

for tool in ("skopeo", "umoci", "docker-registry", "openssl", "curl"):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} not installed (make system-deps)", allow_module_level=True)

REF = "nvcr.io/nvidia/tiny:1.0"  # served as nvidia/tiny:1.0


def run(*argv: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=timeout, check=False)  # fmt: skip


def make_ca(d: Path, name: str) -> tuple[Path, Path]:
    key, cert = d / f"{name}.key", d / f"{name}.pem"
    done = run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
               "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={name}",
               "-addext", "basicConstraints=critical,CA:TRUE",
               "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    assert done.returncode == 0, done.stderr
    return key, cert


def server_cert(d: Path, ca_key: Path, ca_cert: Path) -> tuple[Path, Path]:
    """The mirror host's certificate for 127.0.0.1, signed by the site CA."""
    key, csr, cert, ext = d / "mirror.key", d / "mirror.csr", d / "mirror.pem", d / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    done = run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
               "-keyout", key, "-out", csr, "-subj", "/CN=mirror01")  # fmt: skip
    assert done.returncode == 0, done.stderr
    done = run("openssl", "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key,
               "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", ext)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return key, cert


def one_image_layout(work: Path) -> Path:
    img, layout = work / "img", work / "oci"
    (work / "hello.txt").write_text("hello over TLS\n")
    for args in (["init", "--layout", img], ["new", "--image", f"{img}:latest"],
                 ["insert", "--image", f"{img}:latest", work / "hello.txt", "/hello.txt"]):  # fmt: skip
        done = run("umoci", *args)
        assert done.returncode == 0, done.stderr
    done = run("skopeo", "copy", "--quiet", f"oci:{img}:latest", f"oci:{layout}:{REF}")
    assert done.returncode == 0, done.stderr
    return layout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("registry-tls")
    ca_key, ca = make_ca(work, "site-ca")
    _, other_ca = make_ca(work, "other-ca")
    key, cert = server_cert(work, ca_key, ca)
    layout = one_image_layout(work)
    storage = work / "storage"
    write_storage(layout, storage)
    digest = json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]
    port = free_port()
    bundle = BundlePaths("ab" * 32)
    text = registry_conf(MirrorRef(host="mirror01", registry_port=port), bundle, "127.0.0.1",
                         ModelsSecurity(tls_cert=str(cert), tls_key=str(key)))  # fmt: skip
    # The mirror host's configuration, with this test's storage in place of /srv/gpuprov.
    assert text.count(bundle.registry) == 1
    config = work / "registry.yml"
    config.write_text(text.replace(bundle.registry, str(storage)))
    with docker_registry(config, port):
        yield {"addr": f"127.0.0.1:{port}", "ca": ca, "other_ca": other_ca, "digest": digest,
               "work": work}  # fmt: skip


def test_curl_with_the_site_ca_and_only_with_it(tls_registry) -> None:
    url = f"https://{tls_registry['addr']}/v2/"
    ok = run("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert",
             tls_registry["ca"], "--noproxy", "*", url)  # fmt: skip
    assert (ok.returncode, ok.stdout) == (0, "200"), ok.stderr
    for cacert in (tls_registry["other_ca"], None):
        args = ["--cacert", cacert] if cacert else []
        bad = run("curl", "-sS", "-o", "/dev/null", *args, "--noproxy", "*", url)
        assert bad.returncode == 60, bad.stderr  # "SSL certificate problem"
    plain = run("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--noproxy", "*",
                f"http://{tls_registry['addr']}/v2/")  # fmt: skip
    assert plain.stdout == "400"  # TLS only: the Go server answers plain HTTP with 400


def test_skopeo_pulls_by_digest_with_the_site_ca(tls_registry) -> None:
    certs = tls_registry["work"] / "certs.d"
    certs.mkdir(exist_ok=True)
    shutil.copy(tls_registry["ca"], certs / "ca.crt")
    image = f"docker://{tls_registry['addr']}/nvidia/tiny:1.0"
    ok = run("skopeo", "inspect", "--cert-dir", certs, image)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["Digest"] == tls_registry["digest"]
    other = tls_registry["work"] / "other.d"
    other.mkdir(exist_ok=True)
    shutil.copy(tls_registry["other_ca"], other / "ca.crt")
    bad = run("skopeo", "inspect", "--cert-dir", other, image)
    assert bad.returncode != 0 and "certificate" in bad.stderr, bad.stderr
