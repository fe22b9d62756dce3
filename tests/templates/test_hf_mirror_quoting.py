"""HF_ENDPOINT reaches /etc/profile.d and environment.d quoted, and a bad value is
refused before any file is planned (issue 13, item 2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from gpuprov.deploys.mirror_client import settings_problem

from gpuprov.rendering import render

sys.path.insert(0, str(Path(__file__).parents[1] / "deploys"))

PAYLOADS = [
    "http://m:8090;touch MARK",
    "http://m:8090$(touch MARK)",
    "http://m:8090`touch MARK`",
    "http://m:8090\ntouch MARK",
    "http://m:8090' ; touch MARK ; '",
]


def source(text: str, cwd: Path) -> str:
    (cwd / "f.sh").write_text(text)
    out = subprocess.run(
        ["sh", "-c", '. ./f.sh && printf %s "$HF_ENDPOINT"'],
        cwd=cwd, capture_output=True, text=True, timeout=10,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.parametrize("value", PAYLOADS)
@pytest.mark.parametrize("template", ["hf-mirror.sh.j2", "hf-mirror.conf.j2"])
def test_even_an_unvalidated_value_never_runs_in_a_login_shell(tmp_path, template, value):
    """Before: `export HF_ENDPOINT={{ hf_endpoint }}` ran the payload in every login shell."""
    assert source(render(template, hf_endpoint=value), tmp_path) == value
    assert not (tmp_path / "MARK").exists()


def test_plain_url_renders_unchanged(tmp_path):
    text = render("hf-mirror.sh.j2", hf_endpoint="http://10.0.0.5:8090")
    assert "export HF_ENDPOINT=http://10.0.0.5:8090\n" in text
    assert source(text, tmp_path) == "http://10.0.0.5:8090"


@pytest.mark.parametrize("value", PAYLOADS)
def test_mirror_client_refuses_a_bad_endpoint(value):
    assert "hf_endpoint" in (settings_problem({"hf_endpoint": value}) or "")


def test_mirror_client_plan_refuses_before_writing(tmp_path):
    from hoststate import host_state_output
    from plan_harness import gpu_host, plan

    from gpuprov.engine.refusal import HostRefused

    keyring = tmp_path / "k.gpg"
    keyring.write_bytes(b"k")
    mirror = {
        "apt_url": "http://10.0.0.5:8080",
        "keyring": str(keyring),
        "hf_endpoint": PAYLOADS[0],
    }
    with pytest.raises(HostRefused, match="hf_endpoint"):
        plan(gpu_host(), host_state_output("debian12"), gpuprov_mirror_client=mirror)


GENERATOR = Path("/usr/lib/systemd/user-environment-generators/30-systemd-environment-d-generator")


@pytest.mark.skipif(
    not GENERATOR.exists(), reason="systemd's environment.d generator not installed"
)
def test_systemd_reads_the_quoted_value_back(tmp_path):
    """environment.d is read by systemd, not sh: its parser removes the same quotes."""
    url = "http://10.0.0.5:8090/~hf"  # '~' makes shlex.quote quote it
    (tmp_path / "environment.d").mkdir()
    conf = render("hf-mirror.conf.j2", hf_endpoint=url)
    assert f"HF_ENDPOINT='{url}'" in conf
    (tmp_path / "environment.d" / "90-gpuprov-hf.conf").write_text(conf)
    out = subprocess.run(
        [str(GENERATOR)], env={"XDG_CONFIG_HOME": str(tmp_path), "HOME": str(tmp_path)},
        capture_output=True, text=True, timeout=10,
    )  # fmt: skip
    assert f"HF_ENDPOINT={url}" in out.stdout.splitlines(), out.stdout
