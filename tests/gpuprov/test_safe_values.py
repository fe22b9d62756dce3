"""The validators for untrusted strings: fullmatch over small alphabets (issue 13, items
2, 3, 15 and 19)."""

from __future__ import annotations

import pytest

from gpuprov.aptrepo import deb822_source
from gpuprov.errors import InputError
from gpuprov.safe_values import address_problem, host_port_problem, url_problem, user_problem


@pytest.mark.parametrize(
    "url",
    [
        "http://mirror01:8090",
        "https://10.0.0.5/hf",
        "http://[fd00::5]:8080/apt/",
        "http://m.lab./a%20b",
    ],
)
def test_good_urls(url):
    assert url_problem(url) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://m:8090\n",  # item 19: `$` matched before this newline
        "http://m:8090;touch /tmp/x",
        "http://m:8090/$(touch /tmp/x)",
        "http://m:8090/`id`",
        "http://m:8090/a b",
        "http://m:8090/?q=1",
        "http://user:pw@m:8090",
        "http://-oProxy:8090",
        "http://m:0",
        "http://m:99999",
        "ftp://m",
        "http://",
        "http://m:8090/'",
        'http://m:8090/"',
    ],
)
def test_bad_urls(url):
    assert url_problem(url)


def test_file_urls_only_where_asked():
    assert url_problem("file:///srv/repo", ("http", "https", "file")) is None
    assert url_problem("file://host/srv/repo", ("http", "https", "file"))
    assert url_problem("file:///srv/repo")


@pytest.mark.parametrize("value", ["gpu01", "gpu-01.lab", "10.0.0.1", "fd00::1", "gpu_01"])
def test_good_addresses(value):
    assert address_problem(value) is None


@pytest.mark.parametrize(
    "value",
    [
        "$(touch${IFS}/tmp/x)",
        "-oProxyCommand=x",
        "a;b",
        "a b",
        "gpu01\n",
        "",
        "a..b",
        "'x'",
        "x`y`",
    ],
)
def test_bad_addresses(value):
    assert address_problem(value)


@pytest.mark.parametrize("value", ["-oProxyCommand=touch", "root\n", "a b", "$(id)", ""])
def test_bad_users(value):
    assert user_problem(value)


def test_good_users_and_registries():
    assert user_problem("ubuntu") is None and user_problem("svc_gpu.ops-1") is None
    assert (
        host_port_problem("mirror01:5000") is None and host_port_problem("[fd00::5]:5000") is None
    )
    assert host_port_problem("mirror01:5000;x") and host_port_problem("m:70000")


def test_apt_source_url_with_trailing_newline_is_refused():
    """Item 19: an apt URL ending in a newline passed `^...$` and broke the sources file."""
    with pytest.raises(InputError, match="repository URL"):
        deb822_source("http://mirror:8080/apt\n", "gpuprov", ["main"], "/etc/apt/keyrings/k.gpg")
    with pytest.raises(InputError, match="invalid suite"):
        deb822_source("http://mirror:8080/apt", "gpuprov\n", ["main"], "/etc/apt/keyrings/k.gpg")
    with pytest.raises(InputError, match="invalid component"):
        deb822_source("http://mirror:8080/apt", "gpuprov", ["main\n"], "/etc/apt/keyrings/k.gpg")
