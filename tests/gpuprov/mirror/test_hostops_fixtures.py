"""The mirror host's operations as data: fixtures/<module>.<operation>/<case>.json (kwargs +
facts -> exact commands, or the noop description), the pyinfra-testing fixture format.

Run with pyinfra-testing's fake host and state directly (one parametrized test per
case) rather than its `make_operation_tests`, which imports pyinfra_cli: its import
gevent-patches the process unless tests/conftest.py has registered it first."""

from __future__ import annotations

import json
from importlib import import_module
from pathlib import Path

import pytest
from pyinfra.context import ctx_host, ctx_state
from pyinfra_testing.util import FakeState, create_host

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CASES = sorted(FIXTURES.glob("*.*/*.json"))


@pytest.mark.parametrize("case", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_operation_fixture(case: Path) -> None:
    data = json.loads(case.read_text())
    module_name, op_name = case.parent.name.rsplit(".", 1)
    op = getattr(import_module(f"gpuprov.mirror.{module_name}"), op_name)
    state = FakeState()
    host = create_host(state, facts=data.get("facts", {}))
    with ctx_state.use(state), ctx_host.use(host):
        commands = list(op._inner(**data["kwargs"]))
    got = [(c if isinstance(c, str) else c.get_raw_value()).strip() for c in commands]
    assert got == data["commands"]
    if "noop_description" in data:
        assert host.noop_description == data["noop_description"]


def test_fixtures_exist() -> None:
    assert len(CASES) >= 2, f"no operation fixtures under {FIXTURES}"
