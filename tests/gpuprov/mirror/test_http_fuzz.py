"""Any request target, Range and Host header: the mirror answers with a status below 500
and an error code, and logs no error (issue #13, items 12 and 13 generalised). Hypothesis
drives http.client against the real server on loopback."""

from __future__ import annotations

import http.client
import logging
from urllib.parse import quote_from_bytes, urlsplit

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

PREFIXES = [
    "/",
    "/acme/tiny-bert/resolve/main/",
    "/acme/tiny-bert/resolve/",
    "/datasets/acme/tiny-data/resolve/main/",
    "/api/models/acme/tiny-bert/tree/main/",
    "/api/models/acme/tiny-bert/revision/",
    "/api/datasets/acme/tiny-data/tree/",
    "/api/models/",
    "/api/models/acme/gated-bert/",
]

segments = st.lists(st.binary(max_size=12), max_size=4).map(
    lambda parts: "/".join(quote_from_bytes(p, safe="") for p in parts)
)
header_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40
)  # what http.client lets through in a header


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    prefix=st.sampled_from(PREFIXES),
    tail=segments,
    query=st.sampled_from(["", "?recursive=true", "?cursor=%FF", "?limit=-1", "?expand=1&limit=x"]),
    method=st.sampled_from(["GET", "HEAD", "POST", "DELETE"]),
    rng=st.none() | header_text,
    host=st.none() | header_text,
    auth=st.none() | header_text,
)
def test_no_request_makes_a_500_or_a_logged_error(
    mirror, caplog, prefix, tail, query, method, rng, host, auth
):
    headers = {
        k: v for k, v in (("Range", rng), ("Host", host), ("Authorization", auth)) if v is not None
    }
    parts = urlsplit(mirror.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        try:
            conn.request(method, prefix + tail + query, headers=headers)
            resp = conn.getresponse()
            resp.read()
        finally:
            conn.close()
    assert resp.status < 500, (prefix + tail + query, headers, resp.status)
    if resp.status >= 400:
        assert resp.getheader("X-Error-Code"), (prefix + tail + query, resp.status)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert errors == [], errors
