"""The scratch-root predicate, on real pyinfra hosts: set by the `gpuprov_root` host var
(an absolute path), where `/` is the real root, not a scratch one."""

from __future__ import annotations

import pytest
from pyinfra.api import Inventory

from gpuprov.facts.scratch_root import is_scratch_root, root_prefix


def pyinfra_host(**data: object):
    return Inventory(([("node01", data)], {})).get_host("node01")


@pytest.mark.parametrize(
    ("data", "prefix"),
    [
        ({}, ""),
        ({"gpuprov_root": None}, ""),
        ({"gpuprov_root": ""}, ""),
        ({"gpuprov_root": "/"}, ""),
        ({"gpuprov_root": "/var/tmp/pfl"}, "/var/tmp/pfl"),
        ({"gpuprov_root": "/var/tmp/pfl/"}, "/var/tmp/pfl"),
    ],
)
def test_root_prefix_and_predicate(data: dict[str, object], prefix: str) -> None:
    pyhost = pyinfra_host(**data)
    assert root_prefix(pyhost) == prefix
    assert is_scratch_root(pyhost) is (prefix != "")
