"""The mirror against hostile requests (issue #13, items 7, 12, 13 and 18): a real server
on loopback and http.client, which sends targets, headers and bodies exactly as written.
Each refusal is a 4xx with an error code, never a 500 or a logged traceback."""

from __future__ import annotations

import http.client
import json
import logging
import time
from urllib.parse import urlencode, urlsplit

import pytest

from gpuprov.mirror.server import ServerConfig

from .conftest import ThreadedServer

MAX_PATHS = 1000  # the Hub caps paths-info at 1000 paths per request; so does the mirror
PATHS_INFO = "/api/models/acme/tiny-bert/paths-info/main"
JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def request(url: str, method: str, target: str, headers: dict | None = None, body=None):
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def errors_logged(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


# ---- item 12: CR/LF in the URL -------------------------------------------------------------
@pytest.mark.parametrize(
    "target",
    [
        "/acme/tiny-bert/resolve/main/con%0Afig.json",
        "/acme/tiny-bert/resolve/main/config.json%0D",
        "/acme/tiny-bert/resolve/ma%0Ain/config.json",
        "/api/models/acme/tiny%0D%0Abert",
        "/%0A",
    ],
)
def test_control_characters_in_the_url_are_400_without_traceback(mirror, caplog, target):
    with caplog.at_level(logging.INFO):
        status, h, body = request(mirror.url, "GET", target)
    assert status == 400 and h["x-error-code"] == "InvalidPath", (status, body)
    assert "control character" in json.loads(body)["error"]
    assert errors_logged(caplog) == []


def test_access_log_status_is_what_was_sent(mirror, caplog):
    with caplog.at_level(logging.INFO, logger="gpuprov.mirror.access"):
        status, _, _ = request(mirror.url, "GET", "/acme/tiny-bert/resolve/main/a%0Ab")
        deadline = time.monotonic() + 10  # the line is written once the body is out
        while time.monotonic() < deadline:
            logged = [
                json.loads(r.getMessage())
                for r in caplog.records
                if r.name == "gpuprov.mirror.access" and "a%0Ab" in r.getMessage()
            ]
            if logged:
                break
            time.sleep(0.02)
    assert status == 400 and [ln["status"] for ln in logged] == [400]


# ---- item 13: deeply nested JSON -----------------------------------------------------------
def test_deeply_nested_json_is_400_without_traceback(mirror, caplog):
    body = "[" * 200_000 + "]" * 200_000
    with caplog.at_level(logging.INFO):
        status, h, _ = request(mirror.url, "POST", PATHS_INFO, JSON, body)
        nested = '{"paths": ' + "[" * 100_000 + "]" * 100_000 + "}"
        status2, h2, _ = request(mirror.url, "POST", PATHS_INFO, JSON, nested)
    assert status == status2 == 400 and h["x-error-code"] == h2["x-error-code"] == "InvalidPath"
    assert errors_logged(caplog) == []


# ---- item 7: paths-info amplification ------------------------------------------------------
def test_many_repeated_paths_are_refused_not_amplified(mirror):
    body = json.dumps({"paths": ["onnx"] * 300_000, "expand": True})  # < 4 MiB
    status, h, resp = request(mirror.url, "POST", PATHS_INFO, JSON, body)
    assert status == 400 and h["x-error-code"] == "InvalidPath"
    assert f"at most {MAX_PATHS} paths" in json.loads(resp)["error"]
    assert len(resp) < 1024
    # A form is capped by aiohttp itself (413) or by the mirror (400): never answered.
    form = urlencode([("paths", "config.json")] * (MAX_PATHS + 1))
    status, h, _ = request(mirror.url, "POST", PATHS_INFO, FORM, form)
    assert (status, h["x-error-code"]) in ((400, "InvalidPath"), (413, "RequestEntityTooLarge"))


def test_paths_are_answered_once_each_up_to_the_cap(mirror):
    paths = ["config.json", "onnx"] * (MAX_PATHS // 2)
    status, _, resp = request(mirror.url, "POST", PATHS_INFO, JSON, json.dumps({"paths": paths}))
    assert status == 200 and [i["path"] for i in json.loads(resp)] == ["config.json", "onnx"]
    form = urlencode([("paths", p) for p in paths])
    status, _, resp = request(mirror.url, "POST", PATHS_INFO, FORM, form)
    assert status == 200 and len(json.loads(resp)) == 2


def test_paths_must_be_strings(mirror):
    body = json.dumps({"paths": [{"a": ["b"] * 1000}]})
    status, h, _ = request(mirror.url, "POST", PATHS_INFO, JSON, body)
    assert status == 400 and h["x-error-code"] == "InvalidPath"


# ---- item 18: the Host header is not reflected into Link -----------------------------------
TREE = "/api/datasets/acme/tiny-data/tree/main/data?limit=5"


def test_pagination_link_ignores_the_host_header(mirror):
    status, h, _ = request(mirror.url, "GET", TREE, {"Host": "attacker.example:443"})
    assert status == 200
    assert h["link"].startswith(f"<{mirror.url}/api/datasets/acme/tiny-data/tree/"), h["link"]
    assert "attacker" not in h["link"]


def test_pagination_link_uses_public_url(mirror_store):
    server = ThreadedServer(
        ServerConfig(mirror_store.store, port=0, public_url="https://models.site.example/hf/")
    )
    try:
        _, h, _ = request(server.url, "GET", TREE, {"Host": "attacker.example"})
    finally:
        server.stop()
    assert h["link"].startswith("<https://models.site.example/hf/api/datasets/"), h["link"]


def test_pagination_link_on_a_wildcard_bind_names_the_address_reached(mirror_store):
    # Bound to every address for a moment (port 0, a sample store); reached on loopback.
    server = ThreadedServer(ServerConfig(mirror_store.store, host="0.0.0.0", port=0))
    try:
        url = f"http://127.0.0.1:{server.running.port}"
        _, h, _ = request(url, "GET", TREE, {"Host": "attacker.example"})
    finally:
        server.stop()
    assert h["link"].startswith(f"<{url}/api/datasets/"), h["link"]


@pytest.mark.parametrize(
    "url",
    [
        "http://models.site; touch /tmp/x",
        "http://models.site/$(id)",
        "https://models.site:8090/\n",
        "ftp://models.site",
        "http://models.site/?next=evil",
        "http://user@models.site",
    ],
)
def test_public_url_is_validated(mirror_store, url):
    from gpuprov.errors import InputError

    with pytest.raises(InputError, match="--public-url"):
        ServerConfig(mirror_store.store, public_url=url).validate()


def test_paths_info_body_trickling_in_is_refused(mirror, monkeypatch):
    import socket

    from gpuprov.mirror import handlers

    monkeypatch.setattr(handlers, "BODY_TIMEOUT_S", 1.0)  # 30 s in service
    port = urlsplit(mirror.url).port
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"POST {PATHS_INFO} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            'Content-Length: 1000\r\n\r\n{"paths": ['.encode()
        )
        started = time.monotonic()
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 400 ") and b"InvalidPath" in reply, reply
    assert time.monotonic() - started < 5
