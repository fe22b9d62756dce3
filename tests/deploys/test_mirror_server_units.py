"""The mirror host's units listen where the inventory says, never on every interface
(issue #13, item 22): the rendered ExecStart is started for real on a loopback alias
(127.0.0.2) and must not answer on another address; unsafe bind values, token and TLS
paths are refused before any unit is written."""

from __future__ import annotations

import json
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from gpuprov.deploys.mirror_server import (
    MirrorHostPaths,
    ModelsSecurity,
    apt_unit,
    models_unit,
)

from gpuprov.errors import InputError
from gpuprov.inventory.model import MirrorRef
from gpuprov.mirror.sample import build_tiny_bert
from gpuprov.mirror.store import add_model

ALIAS = "127.0.0.2"  # on Linux all of 127/8 is loopback: a second "interface" to miss


def directives(text: str) -> dict[str, str]:
    return dict(
        line.split("=", 1) for line in text.splitlines() if "=" in line and line[0] not in "#"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


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
    paths = MirrorHostPaths(root="/opt/gpuprov", store=str(store))
    unit = directives(models_unit(MirrorRef(host="mirror01", models_port=port), paths, ALIAS))
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


def test_apt_unit_listens_on_the_inventory_address_only(tmp_path):
    (tmp_path / "dists").mkdir()
    (tmp_path / "dists" / "InRelease").write_text("signed\n")
    port = free_port()
    text = apt_unit(MirrorRef(host="m", apt_port=port), MirrorHostPaths(apt=str(tmp_path)), ALIAS)
    argv = shlex.split(directives(text)["ExecStart"])
    assert argv[argv.index("--bind") + 1] == ALIAS
    argv[0] = sys.executable  # this checkout's python stands in for the host's venv
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(f"http://{ALIAS}:{port}/dists/InRelease", proc)
        assert not answers(f"http://127.0.0.1:{port}/dists/InRelease")
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


@pytest.mark.parametrize(
    "bind",
    ["0.0.0.0", "::", "0:0::0", "", "10.0.0.5 --token-file /x", "$(id)", "m01\n", "-m01", "a;b"],
)
def test_wildcard_or_unsafe_bind_is_refused(bind):
    mirror, paths = MirrorRef(host="m"), MirrorHostPaths()
    with pytest.raises(InputError, match="every interface|expected an IP or a host name"):
        models_unit(mirror, paths, bind)
    with pytest.raises(InputError, match="every interface|expected an IP or a host name"):
        apt_unit(mirror, paths, bind)


@pytest.mark.parametrize("bind", ["10.0.0.5", "fd00::5", "mirror01.site.example", "mirror01"])
def test_addresses_and_host_names_are_accepted(bind):
    unit = directives(models_unit(MirrorRef(host="m"), MirrorHostPaths(), bind))
    assert f"--host {bind} " in unit["ExecStart"]


def test_tokens_and_tls_reach_execstart():
    security = ModelsSecurity(
        token_file="/etc/gpuprov/model-tokens.yaml",
        tls_cert="/etc/gpuprov/tls/models.pem",
        tls_key="/etc/gpuprov/tls/models.key",
        public_url="https://models.site.example:8090",
    )
    argv = shlex.split(
        directives(models_unit(MirrorRef(host="m"), MirrorHostPaths(), "10.0.0.5", security))[
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
        models_unit(MirrorRef(host="m"), MirrorHostPaths(), "10.0.0.5", security)


def test_the_deploy_binds_the_mirror_hosts_inventory_address():
    from gpuprov.deploys.mirror_server import HOST_DATA_KEY, _inventory_address
    from pyinfra.api import Config, Inventory, State
    from pyinfra.context import ctx_host, ctx_state

    from gpuprov.inventory.model import Host, SSHSettings

    me = Host("mirror01", "10.0.0.5", "mirror", "mirror", SSHSettings(), None, None)
    inventory = Inventory(([("@fake/mirror01", {HOST_DATA_KEY: me}), ("@fake/bare", {})], {}))
    state = State(inventory, Config())
    with ctx_state.use(state):
        with ctx_host.use(inventory.get_host("@fake/mirror01")):
            assert _inventory_address() == "10.0.0.5"
        with ctx_host.use(inventory.get_host("@fake/bare")), pytest.raises(InputError):
            _inventory_address()
