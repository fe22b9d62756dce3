"""The mirror host's services listen where the inventory says, never on every interface
(issue #13, item 22), and are what they claim: the rendered model unit's ExecStart and the
rendered nginx configuration are started for real on a loopback alias (127.0.0.2) as an
unprivileged user and must not answer on another address; nginx serves files, refuses
anything but GET/HEAD, lists no directory and follows no symlink; the registry
configuration is read by the real docker-registry (tests/gpuprov/mirror/
test_registry_storage.py serves with it). Unsafe bind values, token and TLS paths are
refused before any file is written."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from gpuprov.deploys.mirror_server import (
    BundlePaths,
    ModelsSecurity,
    apt_unit,
    models_unit,
    nginx_conf,
    registry_conf,
    registry_unit,
)

from gpuprov.errors import InputError
from gpuprov.inventory.model import MirrorRef
from gpuprov.mirror.sample import build_tiny_bert
from gpuprov.mirror.store import add_model

ALIAS = "127.0.0.2"  # on Linux all of 127/8 is loopback: a second "interface" to miss
BUNDLE = BundlePaths("e" * 64)


def directives(text: str) -> dict[str, str]:
    return dict(
        line.split("=", 1) for line in text.splitlines() if "=" in line and line[0] not in "#"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status(url: str, method: str = "GET") -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def answers(url: str) -> bool:
    return status(url) == 200


def wait_for(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while not answers(url):
        assert proc.poll() is None, "the service exited"
        assert time.monotonic() < deadline, f"{url} did not answer"
        time.sleep(0.2)


def test_models_unit_listens_on_the_inventory_address_only(tmp_path):
    store = tmp_path / "store"
    add_model(build_tiny_bert(tmp_path / "m"), store, "acme/m")
    port = free_port()
    unit = directives(models_unit(MirrorRef(host="mirror01", models_port=port), str(store), ALIAS))
    argv = shlex.split(unit["ExecStart"])
    assert argv[0] == "/opt/gpuprov/venv/bin/gpuprov"
    assert argv[argv.index("--host") + 1] == ALIAS and "0.0.0.0" not in unit["ExecStart"]
    argv[0:1] = [sys.executable, "-c", "from gpuprov.cli import main; main()"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready = json.loads(proc.stdout.readline() or "{}")
        assert ready.get("url") == f"http://{ALIAS}:{port}", proc.stderr.read()
        assert answers(f"http://{ALIAS}:{port}/healthz")
        assert not answers(f"http://127.0.0.1:{port}/healthz")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)


@pytest.fixture
def nginx_site():
    """A world-readable scratch bundle directory (the unprivileged nginx must read it):
    an apt-like tree and an RPM-like tree, directories, symlinks out of each tree."""
    if shutil.which("nginx") is None or shutil.which("setpriv") is None:
        pytest.skip("nginx and setpriv needed (make system-deps)")
    top = Path(tempfile.mkdtemp(prefix="gpuprov-nginx-"))
    try:
        top.chmod(0o755)
        root = top / "apt"
        (root / "debian12/dists/gpuprov").mkdir(parents=True)
        (root / "debian12/dists/gpuprov/InRelease").write_text("signed\n")
        (top / "secret").write_text("outside\n")
        (root / "debian12/escape").symlink_to(top / "secret")
        rpm = top / "rpm/rhel9"
        (rpm / "repodata").mkdir(parents=True)
        (rpm / "repodata/repomd.xml").write_text("<repomd/>\n")
        (rpm / "repodata/escape.xml").symlink_to(top / "secret")
        (top / "rpm/escape").symlink_to(top / "secret")
        (top / "keys").mkdir()
        (top / "keys/bundle.asc").write_text("key\n")
        runtime = top / "run"
        runtime.mkdir()
        yield top, root, runtime
    finally:
        shutil.rmtree(top)


def test_nginx_serves_the_tree_on_the_inventory_address_only(nginx_site):
    top, root, runtime = nginx_site
    port = free_port()
    text = nginx_conf(MirrorRef(host="m", apt_port=port), BUNDLE, ALIAS)
    text = text.replace(f"root {BUNDLE.apt};", f"root {root};")  # the scratch tree
    text = text.replace(f"root {BUNDLE.dir};", f"root {top};")
    text = text.replace("/run/gpuprov-apt", str(runtime))
    text = text.replace(
        "access_log syslog:server=unix:/dev/log,nohostname,tag=gpuprov_apt combined",
        "access_log off",
    )
    conf = top / "nginx.conf"
    conf.write_text(text)
    nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    os.chown(runtime, 65534, 65534)
    checked = subprocess.run(
        [*nobody, "nginx", "-e", "stderr", "-t", "-q", "-c", str(conf)],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stderr
    proc = subprocess.Popen(
        [*nobody, "nginx", "-e", "stderr", "-c", str(conf)], stderr=subprocess.PIPE
    )
    try:
        base = f"http://{ALIAS}:{port}/debian12"
        wait_for(f"{base}/dists/gpuprov/InRelease", proc)
        assert status(f"{base}/dists/gpuprov/InRelease", "HEAD") == 200
        assert not answers(f"http://127.0.0.1:{port}/debian12/dists/gpuprov/InRelease")
        assert status(f"{base}/dists/gpuprov/InRelease", "POST") == 403
        assert status(f"{base}/dists/gpuprov/InRelease", "PUT") == 403
        assert status(f"{base}/dists/") in (403, 404)  # no listing
        assert status(f"{base}/escape") in (403, 404)  # never follows a symlink (it exists)
        assert status(f"{base}/../secret") in (400, 404)
        # The RPM repositories beside the apt ones, under the same limits.
        rpm = f"http://{ALIAS}:{port}/rpm"
        assert status(f"{rpm}/rhel9/repodata/repomd.xml") == 200
        assert status(f"{rpm}/rhel9/repodata/repomd.xml", "HEAD") == 200
        assert status(f"{rpm}/rhel9/repodata/repomd.xml", "POST") == 403
        assert status(f"{rpm}/rhel9/repodata/") in (403, 404)  # no listing
        assert status(f"{rpm}/rhel9/repodata/escape.xml") in (403, 404)  # no symlink
        assert status(f"{rpm}/escape") in (403, 404)
        assert status(f"{rpm}/../keys/bundle.asc") in (400, 404)
        assert status(f"{rpm}/../secret") in (400, 404)
        # Only rpm/ of the bundle directory is reachable, never its other parts.
        assert status(f"http://{ALIAS}:{port}/keys/bundle.asc") == 404
        assert status(f"http://{ALIAS}:{port}/rpmx/rhel9/repodata/repomd.xml") == 404
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_units_are_hardened_and_read_only():
    mirror = MirrorRef(host="m", apt_port=8081, registry_port=5001, models_port=8091)
    for text in (
        apt_unit(mirror),
        registry_unit(mirror),
        models_unit(mirror, BUNDLE.models, "10.0.0.5"),
    ):
        unit = directives(text)
        assert unit["User"] == "gpuprov-mirror" and unit["Restart"] == "on-failure", text
        assert unit["ProtectSystem"] == "strict" and unit["NoNewPrivileges"] == "yes"
        assert unit["PrivateTmp"] == "yes" and unit["ReadOnlyPaths"] == "/srv/gpuprov"
        assert unit["StandardOutput"] == "journal" and "AmbientCapabilities" not in unit
    low = directives(apt_unit(MirrorRef(host="m", apt_port=80)))
    assert low["AmbientCapabilities"] == "CAP_NET_BIND_SERVICE"


def test_registry_config_is_pull_only_and_optionally_tls():
    from ruamel.yaml import YAML

    mirror = MirrorRef(host="m", registry_port=5001)
    plain = YAML(typ="safe").load(registry_conf(mirror, BUNDLE, "10.0.0.5", ModelsSecurity()))
    assert plain["http"]["addr"] == "10.0.0.5:5001" and "tls" not in plain["http"]
    assert plain["storage"]["maintenance"]["readonly"]["enabled"] is True
    assert plain["storage"]["filesystem"]["rootdirectory"] == f"/srv/gpuprov/registry/{'e' * 64}"
    tls = ModelsSecurity(tls_cert="/etc/gpuprov/tls/m.pem", tls_key="/etc/gpuprov/tls/m.key")
    doc = YAML(typ="safe").load(registry_conf(mirror, BUNDLE, "fd00::5", tls))
    assert doc["http"]["tls"] == {
        "certificate": "/etc/gpuprov/tls/m.pem",
        "key": "/etc/gpuprov/tls/m.key",
    }
    assert doc["http"]["addr"] == "[fd00::5]:5001"


@pytest.mark.parametrize(
    "bind",
    ["0.0.0.0", "::", "0:0::0", "", "10.0.0.5 --token-file /x", "$(id)", "m01\n", "-m01", "a;b"],
)
def test_wildcard_or_unsafe_bind_is_refused(bind):
    mirror = MirrorRef(host="m")
    with pytest.raises(InputError, match="every interface|expected an IP or a host name"):
        models_unit(mirror, BUNDLE.models, bind)
    with pytest.raises(InputError, match="every interface|expected an IP or a host name"):
        nginx_conf(mirror, BUNDLE, bind)
    with pytest.raises(InputError, match="every interface|expected an IP or a host name"):
        registry_conf(mirror, BUNDLE, bind, ModelsSecurity())


@pytest.mark.parametrize("bind", ["10.0.0.5", "fd00::5", "mirror01.site.example", "mirror01"])
def test_addresses_and_host_names_are_accepted(bind):
    unit = directives(models_unit(MirrorRef(host="m"), BUNDLE.models, bind))
    assert f"--host {bind} " in unit["ExecStart"]


def test_tokens_and_tls_reach_execstart():
    security = ModelsSecurity(
        token_file="/etc/gpuprov/model-tokens.yaml",
        tls_cert="/etc/gpuprov/tls/models.pem",
        tls_key="/etc/gpuprov/tls/models.key",
        public_url="https://models.site.example:8090",
    )
    argv = shlex.split(
        directives(models_unit(MirrorRef(host="m"), BUNDLE.models, "10.0.0.5", security))[
            "ExecStart"
        ]
    )
    pairs = dict(zip(argv[3::2], argv[4::2], strict=False))
    assert pairs["--token-file"] == "/etc/gpuprov/model-tokens.yaml"
    assert pairs["--tls-cert"] == "/etc/gpuprov/tls/models.pem"
    assert pairs["--tls-key"] == "/etc/gpuprov/tls/models.key"
    assert pairs["--public-url"] == "https://models.site.example:8090"


@pytest.mark.parametrize(
    ("security", "message"),
    [
        (ModelsSecurity(token_file="tokens.yaml"), "token_file"),
        (ModelsSecurity(token_file="/etc/t.yaml --host 0.0.0.0"), "token_file"),
        (ModelsSecurity(tls_cert="/etc/c.pem"), "give both"),
        (ModelsSecurity(public_url="http://m/$(id)"), "public_url"),
    ],
)
def test_unsafe_security_settings_are_refused(security, message):
    with pytest.raises(InputError, match=message):
        models_unit(MirrorRef(host="m"), BUNDLE.models, "10.0.0.5", security)
