"""`vars:` cannot carry connection settings, and the gpuprov_* values that reach hosts'
files and commands are validated with their line (issue 13, items 2 and 16)."""

from __future__ import annotations

import pytest

from gpuprov.inventory.loader import load_inventory

from .conftest import MINIMAL


def with_gpu_vars(text: str) -> str:
    return MINIMAL.replace(
        "    profile: hgx-h100-8\n", f"    profile: hgx-h100-8\n    vars: {text}\n"
    )


@pytest.mark.parametrize(
    "key",
    [
        "ssh_config_file",
        "ssh_forward_agent",
        "_sudo_user",
        "_env",
        "_shell_executable",
        "ssh_proxy_command",
        "docker_identifier",
    ],
)
def test_connection_keys_in_vars_are_refused(problems, key):
    """Item 16: pyinfra obeyed these (ssh_config_file's ProxyCommand runs locally)."""
    (p,) = problems(with_gpu_vars(f"{{{key}: /tmp/evil}}"))
    assert f"groups.gpu.vars.{key}" in p.message and "ssh:" in p.message
    assert p.location.line == 11  # the vars line


@pytest.mark.parametrize(
    "endpoint",
    [
        '"http://m:8090;touch /tmp/x"',
        '"http://m:8090\\n"',
        '"http://m:8090/$(id)"',
        '"http://m:8090\\ntouch /tmp/x"',
    ],
)
def test_hf_endpoint_is_a_url(problems, endpoint):
    """Item 2: hf_endpoint went unquoted into /etc/profile.d on every GPU host."""
    (p,) = problems(
        with_gpu_vars(
            f"{{gpuprov_mirror_client: {{apt_url: 'http://m:8080', keyring: k.gpg, hf_endpoint: {endpoint}}}}}"
        )
    )
    assert "gpuprov_mirror_client.hf_endpoint" in p.message and "URL" in p.message


def test_mirror_client_values(problems):
    found = problems(with_gpu_vars(
        "{gpuprov_mirror_client: {apt_url: 'http://m:8080 x', keyring: k.gpg, suite: 'a;b', "
        "registry: 'm:5000;x', registry_scheme: ftp, components: [main, 'x y'], extra: 1}}"
    ))  # fmt: skip
    text = " | ".join(p.message for p in found)
    for key in ("apt_url", "suite", "registry", "registry_scheme", "components", "'extra'"):
        assert key in text, text


def test_other_gpuprov_vars(problems):
    found = problems(with_gpu_vars(
        "{gpuprov_root: '/tmp/x; rm -rf /', gpuprov_verify_image: 'nvidia/cuda $(id)', "
        "gpuprov_dcgm_version: '1:4.2\\n'}"
    ))  # fmt: skip
    assert len(found) == 3, [str(p) for p in found]


def test_good_vars_load(write):
    c = load_inventory(write(with_gpu_vars(
        "{note: 'free text; anything', sim_profile: hgx-h100-8, gpuprov_root: /srv/root, "
        "gpuprov_verify_image: 'registry:5000/nvidia/cuda:12.8.0-base', "
        "gpuprov_mirror_client: {apt_url: 'http://10.0.0.5:8080', keyring: lab/k.gpg, "
        "hf_endpoint: 'http://mirror01:8090', registry: 'mirror01:5000'}}"
    )))  # fmt: skip
    assert c.hosts["g1"].vars["gpuprov_mirror_client"]["hf_endpoint"] == "http://mirror01:8090"
