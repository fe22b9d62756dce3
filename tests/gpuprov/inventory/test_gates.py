"""`rollout.gates`: built-in names and `{command: ...}` gates, with located errors."""

from __future__ import annotations

from gpuprov.inventory.loader import load_inventory
from gpuprov.inventory.model import CommandGate

from .conftest import MINIMAL


def with_gates(gates: str) -> str:
    return MINIMAL.replace(
        "  mirror: {host: mirror01}\n",
        f"  mirror: {{host: mirror01}}\n  rollout:\n    gates: {gates}\n",
    )


def test_builtin_and_command_gates(write):
    path = write(
        with_gates('[nvidia-smi, {command: "test -f /etc/gpuprov/host.json", timeout: 30}]')
    )
    gates = load_inventory(path).rollout.gates
    assert gates[0] == "nvidia-smi"
    assert isinstance(gates[1], CommandGate)
    assert (gates[1].command, gates[1].timeout) == ("test -f /etc/gpuprov/host.json", 30)
    assert gates[1].location.line == 9


def test_bad_gates_are_located(problems):
    found = problems(
        with_gates('[nvidia-smy, {command: ""}, {cmd: x}, {command: "ping {hostname}"}, 3]')
    )
    text = [f"{p.location.line}:{p.message}" for p in found]
    assert any("unknown gate 'nvidia-smy'" in t and "nvidia-smi" in t for t in text), text
    assert any("a command gate needs" in t for t in text), text
    assert any("unknown key" in t.lower() and "cmd" in t for t in text), text
    assert any("unknown placeholder {hostname}" in t for t in text), text
    assert any("expected a gate name" in t for t in text), text
    assert all(t.startswith("9:") for t in text), text
