"""controlled_reboot never reboots the machine running gpuprov."""

from __future__ import annotations

import pytest
from pyinfra.api import Config, Inventory, State
from pyinfra.api.exceptions import OperationError
from pyinfra.context import ctx_host, ctx_state

from gpuprov.operations.system import controlled_reboot, is_local_connector, local_machine_id


def _local_host():
    inventory = Inventory((["@local"], {}))
    state = State(inventory, Config())
    return state, inventory.get_host("@local")


def test_local_connector_is_recognised() -> None:
    _, host = _local_host()
    assert is_local_connector(host)


def test_refuses_local_connector_at_plan_time() -> None:
    state, host = _local_host()
    with ctx_state.use(state), ctx_host.use(host), pytest.raises(OperationError, match="local"):
        list(controlled_reboot._inner(reasons=["driver changed"]))


def test_no_reasons_is_fine_even_locally() -> None:
    state, host = _local_host()
    with ctx_state.use(state), ctx_host.use(host):
        assert list(controlled_reboot._inner(reasons=[])) == []


def test_this_machine_has_an_id() -> None:
    # The control-node check compares /etc/machine-id; an empty id would disable it.
    assert local_machine_id()


def test_control_node_check_runs_as_a_pyinfra_function_command() -> None:
    # pyinfra passes (state, host) only to functions whose parameters have those names;
    # anything else is called without arguments and the reboot op fails on every host.
    from pyinfra.api import FunctionCommand

    from gpuprov.operations.system import refuse_control_node

    state, host = _local_host()
    with pytest.raises(OperationError, match="local connector"):
        FunctionCommand(refuse_control_node, (), {}).execute(state, host, {})
