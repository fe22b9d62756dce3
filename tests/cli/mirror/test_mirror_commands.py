"""`gpuprov mirror` through the real entry point (main(), gevent patching included), with
`serve` as a real subprocess that real clients download from, over HTTP and TLS."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gpuprov.mirror.sample import build_tiny_bert

GPUPROV = [sys.executable, "-c", "from gpuprov.cli import main; main()"]


def gpuprov(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*GPUPROV, *args], capture_output=True, text=True, timeout=120, **kw)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[Path, Path, str]:
    root = tmp_path_factory.mktemp("cli-mirror")
    src = build_tiny_bert(root / "tiny-bert")
    proc = gpuprov(
        "mirror",
        "add-model",
        str(src),
        "--store",
        str(root / "store"),
        "--repo",
        "acme/tiny-bert",
        "--output",
        "json",
    )
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["repo"] == "acme/tiny-bert" and info["refs"] == ["main"] and info["files"] == 6
    return root / "store", src, info["sha"]


class Served:
    def __init__(self, *args: str, env: dict | None = None):
        self.proc = subprocess.Popen(
            [*GPUPROV, "mirror", "serve", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"serve did not start: {self.proc.stderr.read()}")
        self.ready = json.loads(line)
        self.url = self.ready["url"]

    def stop(self) -> tuple[int, str, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=20)
        return self.proc.returncode, out, err


def test_list_text_and_json(store):
    path, _, sha = store
    proc = gpuprov("mirror", "list", "--store", str(path), "--output", "json")
    assert proc.returncode == 0
    assert [(r["repo"], r["sha"], r["refs"]) for r in json.loads(proc.stdout)] == [
        ("acme/tiny-bert", sha, ["main"])
    ]
    proc = gpuprov("mirror", "list", "--store", str(path))
    assert proc.returncode == 0 and "acme/tiny-bert" in proc.stdout and sha[:12] in proc.stdout


def test_bad_input_exits_2_with_a_located_message(store, tmp_path):
    path, src, _ = store
    proc = gpuprov("mirror", "add-model", str(src), "--store", str(path), "--repo", "justaname")
    assert proc.returncode == 2 and "--repo" in proc.stderr and "ORG/NAME" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = gpuprov(
        "mirror", "add-model", str(tmp_path / "nope"), "--store", str(path), "--repo", "a/b"
    )
    assert proc.returncode == 2 and "not a directory" in proc.stderr
    proc = gpuprov("mirror", "serve", "--store", str(tmp_path / "empty"), "--port", "0")
    assert proc.returncode == 2 and "not a mirror store" in proc.stderr
    bad = tmp_path / "tokens.yaml"
    bad.write_text("tokens:\n  short: [acme/*]\ngated: acme/*\n")
    bad.chmod(0o600)
    proc = gpuprov("mirror", "serve", "--store", str(path), "--port", "0", "--token-file", str(bad))
    assert proc.returncode == 2, proc.stderr
    assert (
        f"{bad}:2:" in proc.stderr and f"{bad}:3:" in proc.stderr and "Traceback" not in proc.stderr
    )


def test_serve_subprocess_serves_real_clients_and_stops_on_sigterm(store, tmp_path):
    from huggingface_hub import hf_hub_download

    path, src, sha = store
    server = Served("--store", str(path))
    try:
        got = hf_hub_download(
            "acme/tiny-bert",
            "model.safetensors",
            endpoint=server.url,
            cache_dir=tmp_path / "c",
            token=False,
        )
        assert Path(got).read_bytes() == (src / "model.safetensors").read_bytes()
        assert Path(got).parent.name == sha
    finally:
        code, out, err = server.stop()
    assert code == 0, err
    log = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert any(e.get("route") == "resolve" and e.get("status") == 200 for e in log), out


def test_serve_over_tls_with_a_token(store, tmp_path):
    path, src, _ = store
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"tokens": {"tls-token-123456": ["acme/*"]}, "gated": ["acme/*"]}))
    tokens.chmod(0o600)  # a token file others can read is refused
    server = Served(
        "--store",
        str(path),
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
        "--token-file",
        str(tokens),
    )
    try:
        assert server.url.startswith("https://127.0.0.1:")
        env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
        env |= {
            "HF_ENDPOINT": server.url,
            "HF_HUB_DISABLE_XET": "1",
            "HF_HOME": str(tmp_path / "home"),
            "SSL_CERT_FILE": str(cert),
            "HF_TOKEN": "tls-token-123456",
        }
        code = "from huggingface_hub import hf_hub_download as d; print(d('acme/tiny-bert', 'config.json'))"
        proc = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        got = Path(proc.stdout.strip().splitlines()[-1]).read_bytes()
        assert (
            hashlib.sha256(got).digest()
            == hashlib.sha256((src / "config.json").read_bytes()).digest()
        )
        # Without the token (and an empty cache, else the client falls back to it): refused.
        env.pop("HF_TOKEN")
        env["HF_HOME"] = str(tmp_path / "home2")
        proc = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode != 0 and "GatedRepoError" in proc.stderr
    finally:
        rc, _, err = server.stop()
    assert rc == 0, err


def test_only_mirror_serve_skips_gevent_patching():
    from gpuprov.cli import _needs_gevent

    assert not _needs_gevent(["mirror", "serve", "--store", "s"])
    assert not _needs_gevent(["--debug", "mirror", "serve", "--port", "0"])
    assert _needs_gevent(["mirror", "list", "--store", "s"])
    assert _needs_gevent(["mirror", "add-model", "serve", "--store", "s", "--repo", "a/b"])
    assert _needs_gevent(["apply", "inventory.yaml"])


def test_serve_refuses_a_token_file_others_can_read(store, tmp_path):
    path, _, _ = store
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("tokens:\n  long-enough-token: [acme/*]\n")
    tokens.chmod(0o644)
    proc = gpuprov(
        "mirror", "serve", "--store", str(path), "--port", "0", "--token-file", str(tokens)
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert f"chmod 600 {tokens}" in proc.stderr


def test_serve_refuses_an_unsafe_public_url(store):
    path, _, _ = store
    proc = gpuprov(
        "mirror", "serve", "--store", str(path), "--port", "0", "--public-url", "http://m/$(id)"
    )
    assert proc.returncode == 2 and "--public-url" in proc.stderr, proc.stderr


def test_serve_tells_systemd_it_is_ready_once_it_listens(store, tmp_path):
    """Type=notify: systemd's restart returns on READY=1, so READY=1 must come only when
    the port already answers (an apply followed by verify raced the start before)."""
    import socket

    path, _, _ = store
    notify = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(notify))
        sock.settimeout(60)
        server = Served("--store", str(path), env={**os.environ, "NOTIFY_SOCKET": str(notify)})
        try:
            message = sock.recv(64)
            with socket.create_connection(("127.0.0.1", server.ready["port"]), timeout=5):
                pass
        finally:
            code, _, err = server.stop()
    assert message == b"READY=1"
    assert code == 0, err
