"""Hook and gate templates: bare {host}/{address} only, never inside quotes; a plain
command runs as an argv (issue 13, item 3)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gpuprov.errors import InputError
from gpuprov.inventory.hook_template import argv_if_plain, render_with, template_problem
from gpuprov.inventory.model import Host, SSHSettings
from gpuprov.rollout.hooks import LocalHookRunner

from .conftest import MINIMAL

PAYLOAD = "$(touch${IFS}MARK)`touch${IFS}MARK`'\"$(touch MARK)\"';touch MARK"


@pytest.mark.parametrize(
    "template",
    [
        'scontrol update nodename="{address}" state=drain',
        "scontrol update nodename='{host}' state=drain",
        "kubectl drain {address!r}",
        "kubectl drain {host!s}",
        "kubectl drain {host:>20}",
        "kubectl drain {host.upper}",
        "kubectl drain {address[0]}",
        "cat <<EOF\n{host}\nEOF",
        "drain 'unbalanced {host}",
    ],
)
def test_refused_templates(template):
    assert template_problem(template)


@pytest.mark.parametrize(
    "template",
    [
        "scontrol update nodename={host} state=drain reason='gpuprov rollout'",
        "kubectl drain {host} --ignore-daemonsets && echo {address} >> drained.txt",
        "echo {host}{address}",
        'echo "drained:" {host}',
    ],
)
def test_accepted_templates(template):
    assert template_problem(template) is None


def test_quoted_placeholders_refused_in_the_inventory(problems):
    text = MINIMAL.replace(
        "  mirror: {host",
        "  rollout: {drain: 'ssh ctl \"scontrol drain {address}\"'}\n  mirror: {host",
    )
    (p,) = problems(text)
    assert "rollout.drain: a placeholder is inside quotes" in p.message and p.location.line == 7


def host(name: str, address: str) -> Host:
    return Host(name, address, "gpu", "gpu", SSHSettings(), None, None)


def test_a_value_never_runs_even_if_the_loader_were_bypassed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Before: `echo "{address}"` with this address touched MARK on the control node."""
    monkeypatch.chdir(tmp_path)  # hooks run in gpuprov's working directory
    runner = LocalHookRunner(timeout=10)
    for template in ("echo {address} {host}", "echo {address} | cat", "true && echo x{host}y"):
        result = runner.run(template, host(PAYLOAD, PAYLOAD))
        assert result.ok and PAYLOAD in result.output, result
    with pytest.raises(InputError, match="inside quotes"):
        runner.run('echo "{address}"', host("g1", PAYLOAD))
    assert not (tmp_path / "MARK").exists()


def test_plain_commands_run_without_a_shell(tmp_path: Path):
    command = render_with("printf %s {host}", "g1", "10.0.0.1")
    assert argv_if_plain(command) == ["printf", "%s", "g1"]
    slurm = render_with("scontrol update nodename={host} state=drain reason=gpuprov", "g1", "x")
    assert argv_if_plain(slurm) == [
        "scontrol",
        "update",
        "nodename=g1",
        "state=drain",
        "reason=gpuprov",
    ]
    for shell in (
        "a | b",
        "a $(b)",
        "a > f",
        "X=1 a",
        "a *",
        'a "$HOME"',
        "a; b",
        "cd /x",
        "exec a",
    ):
        assert argv_if_plain(shell) is None, shell
    assert argv_if_plain("echo 'a|b'") == ["echo", "a|b"]
    # and LocalHookRunner uses it: /bin/sh never sees the command
    out = subprocess.run(LocalHookRunner().argv(command), capture_output=True, text=True)
    assert out.stdout == "g1"
