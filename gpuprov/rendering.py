"""The one jinja2 environment every template is rendered with.

Templates are package data (`templates/`, installed as `gpuprov.templates`), loaded through
importlib.resources so they work from a wheel as from a checkout. Each is compiled once per
process, never once per host: the environment caches it by name.
"""

from __future__ import annotations

import shlex
from importlib import resources

import jinja2


def _load(name: str) -> str:
    return resources.files("gpuprov.templates").joinpath(name).read_text()


_ENV = jinja2.Environment(
    loader=jinja2.FunctionLoader(_load),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,  # shell, TOML, systemd units and JSON: escaping would corrupt them
)
# `{{ value | shquote }}` wherever a shell reads the value (profile.d, environment files).
_ENV.filters["shquote"] = shlex.quote


def render(name: str, **values: object) -> str:
    """Render `name` (a file of templates/, e.g. "host.json.j2") with `values`."""
    return _ENV.get_template(name).render(**values)
