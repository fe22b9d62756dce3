"""The mirror's systemd unit and client env templates render to what they claim: the
unit's ExecStart really starts the mirror, the env file points clients at it."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import gpuprov.templates
import jinja2

from gpuprov.mirror.sample import build_tiny_dataset
from gpuprov.mirror.store import add_model

ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(gpuprov.templates.__file__).parent),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
)


def render(name: str, **values) -> str:
    return ENV.get_template(name).render(**values)


def unit_directives(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


def test_unit_execstart_starts_the_mirror(tmp_path):
    store = tmp_path / "store"
    add_model(build_tiny_dataset(tmp_path / "d"), store, "acme/d", repo_type="dataset")
    text = render(
        "gpuprov-models.service.j2",
        gpuprov_bin=f"{sys.executable} -c 'from gpuprov.cli import main; main()'",
        store=store,
        host="127.0.0.1",
        port=0,
        token_file=None,
        tls_cert=None,
        tls_key=None,
        public_url=None,
    )
    unit = unit_directives(text)
    assert unit["User"] == "gpuprov-models" and unit["ProtectSystem"] == "strict"
    assert unit["ReadOnlyPaths"] == str(store) and "AmbientCapabilities" in unit  # port 0 < 1024
    assert "[Install]" in text and unit["WantedBy"] == "multi-user.target"
    proc = subprocess.Popen(shlex.split(unit["ExecStart"]), stdout=subprocess.PIPE, text=True)
    try:
        ready = json.loads(proc.stdout.readline())
        assert ready["event"] == "listening"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    assert proc.returncode == 0


def test_unit_with_tokens_and_tls():
    text = render(
        "gpuprov-models.service.j2",
        gpuprov_bin="/opt/gpuprov/bin/gpuprov",
        store="/srv/models",
        host="0.0.0.0",
        port=8090,
        token_file="/etc/gpuprov/model-tokens.yaml",
        tls_cert="/etc/ssl/m.pem",
        tls_key="/etc/ssl/m.key",
        public_url="https://models.site:8090",
        user="models",
    )
    cmd = shlex.split(unit_directives(text)["ExecStart"])
    assert cmd[:3] == ["/opt/gpuprov/bin/gpuprov", "mirror", "serve"]
    args = dict(zip(cmd[3::2], cmd[4::2], strict=True))
    assert args == {
        "--store": "/srv/models",
        "--host": "0.0.0.0",
        "--port": "8090",
        "--token-file": "/etc/gpuprov/model-tokens.yaml",
        "--tls-cert": "/etc/ssl/m.pem",
        "--tls-key": "/etc/ssl/m.key",
        "--public-url": "https://models.site:8090",
    }
    assert "AmbientCapabilities" not in text and "User=models" in text


def test_client_env():
    text = render(
        "hf-endpoint.env.j2",
        scheme="https",
        host="mirror01",
        port=8090,
        token="t0k3n-abcdef",
        ca_file="/etc/ssl/mirror-ca.pem",
    )
    env = dict(
        line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    assert env == {
        "HF_ENDPOINT": "https://mirror01:8090",
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_TOKEN": "t0k3n-abcdef",
        "SSL_CERT_FILE": "/etc/ssl/mirror-ca.pem",
    }
    text = render("hf-endpoint.env.j2", endpoint="http://10.0.0.5:8090", token=None, ca_file=None)
    assert "HF_ENDPOINT=http://10.0.0.5:8090\n" in text and "HF_TOKEN" not in text


def test_podman_drop_in_is_the_registries_conf_podman_reads():
    import tomllib

    text = render(
        "podman-registries.conf.j2",
        registry="10.0.0.5:5000",
        insecure=True,
        upstreams=("docker.io", "nvcr.io"),
    )
    doc = tomllib.loads(text)
    site, *upstreams = doc["registry"]
    assert site == {"location": "10.0.0.5:5000", "insecure": True}
    assert [(r["prefix"], r["mirror"]) for r in upstreams] == [
        (u, [{"location": "10.0.0.5:5000", "insecure": True}]) for u in ("docker.io", "nvcr.io")
    ]
    tls = tomllib.loads(
        render("podman-registries.conf.j2", registry="r:443", insecure=False, upstreams=())
    )
    assert tls == {"registry": [{"location": "r:443", "insecure": False}]}
