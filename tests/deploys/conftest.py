"""Fixtures of the deploy plan tests (pyinfra's fake connector: tests/deploys/plan_harness.py)."""

from __future__ import annotations

import pytest


@pytest.fixture
def sent(monkeypatch) -> list[str]:
    """Every command the fake connector is sent while planning, in order: a plan's round
    trips to the host, counted."""
    from pyinfra.connectors.fake import FakeConnector

    commands: list[str] = []
    real = FakeConnector.run_shell_command

    def counting(self, command, *args, **kwargs):
        commands.append(str(getattr(command, "get_raw_value", lambda: command)()))
        return real(self, command, *args, **kwargs)

    monkeypatch.setattr(FakeConnector, "run_shell_command", counting)
    return commands
