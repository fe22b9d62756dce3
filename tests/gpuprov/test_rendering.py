from __future__ import annotations

import json

import jinja2
import pytest

from gpuprov.rendering import _ENV, render


def test_templates_load_from_the_package_and_compile_once():
    text = render(
        "host.json.j2",
        host_name="gpu001",
        host_group="gpu",
        host_profile="hgx-h100-8",
        host_role="gpu",
        cluster_name=None,
    )
    assert json.loads(text)["host"] == "gpu001"
    assert _ENV.get_template("host.json.j2") is _ENV.get_template("host.json.j2")


def test_a_missing_value_fails_instead_of_rendering_empty():
    with pytest.raises(jinja2.UndefinedError):
        render("hf-mirror.conf.j2")
