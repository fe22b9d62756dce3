"""What setup.py ships: every package of the tool, never the test bed (test tooling)."""

from __future__ import annotations

import runpy
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_wheel_carries_the_tool_but_not_the_test_bed(monkeypatch):
    import setuptools

    captured: dict = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kw: captured.update(kw))
    monkeypatch.chdir(REPO)
    runpy.run_path(str(REPO / "setup.py"))
    packages = set(captured["packages"])
    for wanted in ("gpuprov", "gpuprov.facts", "gpuprov.operations", "gpuprov.verify",
                   "gpuprov.lab", "gpuprov.cli.apply", "gpuprov.deploys", "gpuprov.templates"):  # fmt: skip
        assert wanted in packages
    assert not {p for p in packages if p.startswith("gpuprov.testbed")}
    # Data only from package-data: inclusion from the source listing would ship it anyway.
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert config["tool"]["setuptools"]["include-package-data"] is False


def test_the_lab_says_it_needs_a_checkout_without_the_test_bed(monkeypatch):
    import importlib.util

    import pytest

    from gpuprov.lab.box import LabError, require_testbed

    require_testbed()  # a checkout: present
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "gpuprov.testbed" else real(n, *a)
    )
    with pytest.raises(LabError, match="run it from a checkout"):
        require_testbed()
