"""The mirror's HTTP surface at byte level: headers, Range, refusals, metrics, logs.

http.client sends the request target exactly as written, so traversal attempts reach the
server unnormalized."""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import time
from urllib.parse import urlsplit

import pytest


def request(url: str, method: str, target: str, headers: dict | None = None, body=None):
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


WEIGHTS = "/acme/tiny-bert/resolve/main/model.safetensors"


def test_head_resolve_has_the_headers_the_client_needs(mirror):
    data = (mirror.model_dir / "model.safetensors").read_bytes()
    status, h, body = request(mirror.url, "HEAD", WEIGHTS, {"Accept-Encoding": "identity"})
    assert status == 200 and body == b""
    assert h["x-repo-commit"] == mirror.shas["model"]
    digest = hashlib.sha256(data).hexdigest()
    assert h["etag"] == h["x-linked-etag"] == f'"{digest}"'
    assert h["x-linked-size"] == h["content-length"] == str(len(data))
    assert h["accept-ranges"] == "bytes"
    assert "location" not in h and "content-encoding" not in h
    # A small non-LFS file: the ETag is its git blob sha1, no X-Linked-* headers.
    cfg = (mirror.model_dir / "config.json").read_bytes()
    status, h, _ = request(mirror.url, "HEAD", "/acme/tiny-bert/resolve/main/config.json")
    git_sha1 = hashlib.sha1(b"blob %d\0" % len(cfg) + cfg).hexdigest()
    assert status == 200 and h["etag"] == f'"{git_sha1}"' and "x-linked-etag" not in h


def test_resolve_by_full_sha_and_url_encoded_branch(mirror):
    sha = mirror.shas["v2"]
    for rev in (sha, "release%2Fv2", "refs%2Fheads%2Frelease%2Fv2", "refs%2Ftags%2Fv2.0"):
        status, h, _ = request(mirror.url, "GET", f"/acme/tiny-bert/resolve/{rev}/config.json")
        assert status == 200 and h["x-repo-commit"] == sha, rev


@pytest.mark.parametrize(
    ("rng", "start", "end"),
    [
        ("bytes=0-99", 0, 100),
        ("bytes=100-", 100, None),
        ("bytes=-10", -10, None),
        ("bytes=5-5", 5, 6),
    ],
)
def test_ranges_give_206_with_content_range(mirror, rng, start, end):
    data = (mirror.model_dir / "extra.safetensors").read_bytes()
    status, h, body = request(
        mirror.url, "GET", "/acme/tiny-bert/resolve/main/extra.safetensors", {"Range": rng}
    )
    want = data[start:end] if end is not None else data[start:]
    assert status == 206 and body == want
    first = start if start >= 0 else len(data) + start
    assert h["content-range"] == f"bytes {first}-{first + len(want) - 1}/{len(data)}"


@pytest.mark.parametrize(
    "rng", ["bytes=abc", "bytes=0-1,5-6", "items=0-5", "bytes=9-3", "bytes=-", "bytes=999999999-"]
)
def test_malformed_or_unsatisfiable_range_is_416_with_code(mirror, rng):
    status, h, _ = request(mirror.url, "GET", WEIGHTS, {"Range": rng})
    size = (mirror.model_dir / "model.safetensors").stat().st_size
    assert status == 416
    assert h["x-error-code"] == "RangeNotSatisfiable"
    assert h["content-range"] == f"bytes */{size}"


@pytest.mark.parametrize(
    "target",
    [
        "/acme/tiny-bert/resolve/main/../../../etc/passwd",
        "/acme/tiny-bert/resolve/main/%2e%2e/%2E%2E/etc/passwd",
        "/acme/tiny-bert/resolve/main/..%2F..%2Fetc%2Fpasswd",
        "/acme/tiny-bert/resolve/main//etc/passwd",
        "/acme/tiny-bert/resolve/main/%2Fetc%2Fpasswd",
        "/acme/tiny-bert/resolve/main/onnx%5C..%5Cconfig.json",
        "/acme/tiny-bert/resolve/main/onnx\\..\\config.json",
        "/acme/tiny-bert/resolve/main/./config.json",
        "/acme/tiny-bert/resolve/main/config.json%00",
        "/../acme/tiny-bert/resolve/main/config.json",
        "/acme/..%2F..%2Fblobs/resolve/main/config.json",
        "/api/models/acme/tiny-bert/tree/main/..%2F..",
    ],
)
def test_path_traversal_is_refused_with_a_code(mirror, target):
    status, h, body = request(mirror.url, "GET", target)
    assert status in (400, 404), target
    assert h.get("x-error-code") in ("InvalidPath", "NotFound", "RepoNotFound", "EntryNotFound")
    assert b"root:" not in body


def test_writes_are_405_and_unknown_routes_404_with_codes(mirror):
    for method in ("PUT", "POST", "DELETE", "PATCH"):
        status, h, _ = request(mirror.url, method, WEIGHTS, body=b"x")
        assert (
            status == 405 and h["x-error-code"] == "MethodNotAllowed" and h["allow"] == "GET, HEAD"
        )
    status, h, _ = request(mirror.url, "POST", "/api/models/acme/tiny-bert/commit/main", body=b"{}")
    assert status == 405 or h["x-error-code"] == "NotFound"
    status, h, _ = request(mirror.url, "GET", "/no/such/route")
    assert status == 404 and h["x-error-code"] == "NotFound"


def test_no_xet_markers_in_any_header_or_listing(mirror):
    targets = [
        ("HEAD", WEIGHTS),
        ("GET", "/api/models/acme/tiny-bert"),
        ("GET", "/api/models/acme/tiny-bert/tree/main?recursive=true&expand=true"),
        ("GET", "/api/datasets/acme/tiny-data/revision/main"),
    ]
    for method, target in targets:
        status, h, body = request(mirror.url, method, target)
        assert status == 200
        blob = json.dumps(h).lower() + body.decode().lower()
        assert "xet" not in blob, target


def test_etag_conditional_get(mirror):
    _, h, _ = request(mirror.url, "HEAD", WEIGHTS)
    status, h2, body = request(mirror.url, "GET", WEIGHTS, {"If-None-Match": h["etag"]})
    assert status == 304 and body == b"" and h2["etag"] == h["etag"]


def test_healthz_metrics_and_json_access_log(mirror, caplog):
    with caplog.at_level(logging.INFO, logger="gpuprov.mirror.access"):
        request(mirror.url, "GET", "/acme/nope/resolve/main/config.json")
        request(mirror.url, "GET", "/acme/tiny-bert/resolve/main/config.json")
        # The server logs once the body is out, which can be just after the client has it,
        # and a line from an earlier test's request can land here first: wait for ours.
        expected = {(404, "RepoNotFound"), (200, None)}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            lines = [
                json.loads(r.getMessage())
                for r in caplog.records
                if r.name == "gpuprov.mirror.access"
            ]
            if {(ln["status"], ln["error"]) for ln in lines} >= expected:
                break
            time.sleep(0.02)
    assert {(ln["status"], ln["error"]) for ln in lines} >= expected
    ok = next(ln for ln in lines if ln["status"] == 200)
    assert ok["route"] == "resolve" and ok["repo"] == "acme/tiny-bert" and ok["bytes"] > 0
    status, _, body = request(mirror.url, "GET", "/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, h, body = request(mirror.url, "GET", "/metrics")
    text = body.decode()
    assert status == 200 and h["content-type"].startswith("text/plain")
    assert "# TYPE gpuprov_mirror_requests_total counter" in text
    assert 'gpuprov_mirror_requests_total{route="resolve",code="200"}' in text
    assert 'gpuprov_mirror_errors_total{code="RepoNotFound"}' in text
    sent = [
        ln
        for ln in text.splitlines()
        if ln.startswith('gpuprov_mirror_sent_bytes_total{route="resolve"}')
    ]
    assert sent and int(sent[0].split()[-1]) > 0


def test_oversized_paths_info_body_is_413_with_a_code(mirror):
    body = b"paths=" + b"a" * (5 * 1024 * 1024)
    status, h, _ = request(
        mirror.url,
        "POST",
        "/api/models/acme/tiny-bert/paths-info/main",
        {"Content-Type": "application/x-www-form-urlencoded"},
        body,
    )
    assert status == 413 and h["x-error-code"] == "RequestEntityTooLarge"


def test_paths_info_json_body(mirror):
    target = "/api/models/acme/tiny-bert/paths-info/main"
    hdr = {"Content-Type": "application/json"}
    status, _, body = request(
        mirror.url, "POST", target, hdr, json.dumps({"paths": ["config.json", "../x"]})
    )
    assert status == 200 and [i["path"] for i in json.loads(body)] == ["config.json"]
    status, h, _ = request(mirror.url, "POST", target, hdr, b"[1, 2]")
    assert status == 400 and h["x-error-code"] == "InvalidPath"
