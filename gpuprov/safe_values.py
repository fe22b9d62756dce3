"""Validators for untrusted strings (inventory values, bundle names) that end up in a
shell command, an argv, a config file or a URL on a host.

Each check is a `re.fullmatch` (never `^...$`: `$` also matches before a final newline,
so "http://x\\n" would pass and break the file it is written into) over a deliberately
small alphabet: no whitespace, no quotes, no shell metacharacters. A check returns None
when the value is fine, or one sentence saying what was expected, for the caller to
put after the value's FILE:LINE:COL.
"""

from __future__ import annotations

import ipaddress
import re

# A DNS label; '_' is tolerated (site names like gpu_01 exist), a leading '-' never is.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?"
HOSTNAME_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
# POSIX-portable login names (useradd's default NAME_REGEX, plus upper case).
USER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")
# URL path: unreserved characters, '/', and %XX escapes. No query, fragment or userinfo.
_PATH_RE = re.compile(r"(?:/(?:[A-Za-z0-9._~+-]|%[0-9A-Fa-f]{2})*)*")
_URL_RE = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<host>\[[0-9A-Fa-f:.]+\]|[^/:\[\]]*)"
    r"(?::(?P<port>[0-9]{1,5}))?(?P<path>/.*)?",
    re.S,
)
IMAGE_RE = re.compile(
    r"[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?(?::[0-9]{1,5})?(?:/[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?"
)
ABS_PATH_RE = re.compile(r"(?:/[A-Za-z0-9._+@,=-]+)+/?|/")
# A path an ssh_config line or an ssh -o option can carry as is (no quoting there:
# paramiko does not unquote, and UserKnownHostsFile splits on whitespace).
SSH_PATH_RE = re.compile(r"[^\s\"'#\\%\x00-\x1f\x7f]+")
DEB_VERSION_RE = re.compile(r"(?:[0-9]+:)?[A-Za-z0-9][A-Za-z0-9.+~-]*")  # epoch:upstream-rev
TOKEN_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+_~-]*")


def address_problem(value: str) -> str | None:
    """A host name or an IP literal (v4 or v6), nothing else."""
    if HOSTNAME_RE.fullmatch(value) and len(value) <= 253:
        return None
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return "expected a host name (letters, digits, '-', '.') or an IP address"
    return None


def user_problem(value: str) -> str | None:
    if USER_RE.fullmatch(value):
        return None
    return "expected a login name: a letter or '_' first, then letters, digits, '_', '.', '-'"


def host_port_problem(value: str) -> str | None:
    """`host:port` or `host` (a registry address)."""
    host, sep, port = value.rpartition(":") if not value.endswith("]") else (value, "", "")
    if not sep:
        host, port = value, ""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if address_problem(host) or (port and not _port_ok(port)):
        return "expected host:port (a host name or IP address, a port from 1 to 65535)"
    return None


def url_problem(value: str, schemes: tuple[str, ...] = ("http", "https")) -> str | None:
    """A URL with one of `schemes`, a host name or IP literal, an optional port and a plain
    path. file:// URLs have no host."""
    m = _URL_RE.fullmatch(value)
    names = [f"{s}://" for s in schemes]
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
    want = f"expected an {listed} URL"
    if m is None or m["scheme"] not in schemes:
        return f"{want} (scheme://host[:port][/path])"
    host, port, path = m["host"], m["port"], m["path"] or ""
    if m["scheme"] == "file":
        if host or port:
            return "a file:// URL has no host: file:///absolute/path"
    else:
        bare = host[1:-1] if host.startswith("[") else host
        if not host or address_problem(bare):
            return f"{want} whose host is a host name or an IP address, got host {host!r}"
        if port is not None and not _port_ok(port):
            return f"{want}: port must be 1 to 65535, got {port}"
    if not _PATH_RE.fullmatch(path):
        return (
            f"{want} whose path has only letters, digits, '/', '.', '_', '~', '+', '-' and "
            "%XX escapes (no spaces, quotes, shell characters, query or newline)"
        )
    return None


def _port_ok(port: str) -> bool:
    return port.isascii() and port.isdigit() and 1 <= int(port) <= 65535
