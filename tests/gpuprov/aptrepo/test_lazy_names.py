"""gpuprov.aptrepo's names load on first use: each is the object its submodule defines,
and importing the client stanza alone (what a GPU host's deploys need) loads none of
keys, publish or verify (docs/performance.md)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import gpuprov.aptrepo as aptrepo


def test_every_name_is_its_submodules_object() -> None:
    assert sorted(aptrepo.__all__) == sorted(aptrepo._WHERE)
    for name, where in aptrepo._WHERE.items():
        module = importlib.import_module(f"gpuprov.aptrepo.{where}")
        assert getattr(aptrepo, name) is getattr(module, name)


def test_unknown_name_is_an_attribute_error() -> None:
    try:
        aptrepo.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("no AttributeError")


def test_the_client_stanza_alone_loads_no_publishing() -> None:
    code = (
        "import sys; from gpuprov.aptrepo.sources import deb822_source; "
        "import json; print(json.dumps([m for m in sys.modules if m.startswith('gpuprov.aptrepo')]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    assert not {"gpuprov.aptrepo.keys", "gpuprov.aptrepo.publish", "gpuprov.aptrepo.verify"} & set(
        loaded
    ), loaded
