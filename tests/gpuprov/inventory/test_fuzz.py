"""Malformed and mutated inventories: always a located InputError, never a traceback."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpuprov.checks import static_checks
from gpuprov.errors import InputError
from gpuprov.inventory.loader import load_inventory

from .conftest import MINIMAL

SETTINGS = settings(
    max_examples=int(__import__("os").environ.get("FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)

yaml_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 70000), st.floats(allow_nan=False, width=16),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12),
)  # fmt: skip
yaml_values = st.recursive(
    yaml_scalars,
    lambda kids: st.one_of(
        st.lists(kids, max_size=3), st.dictionaries(st.text(max_size=8), kids, max_size=3)
    ),
    max_leaves=6,
)


def _load(text: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "inv.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            static_checks(load_inventory(path))  # a loadable file never crashes the checks
        except InputError as exc:
            assert exc.problems
            for p in exc.problems:
                assert p.location.file == str(path)
                assert p.message
                assert "Traceback" not in p.message


@SETTINGS
@given(st.text(max_size=200))
def test_random_text_never_crashes(text):
    _load(text)


@SETTINGS
@given(
    st.integers(0, len(MINIMAL) - 1),
    st.integers(0, 40),
    st.text(" :{}[]-,'\"#&*!|>%@`\n\tab0", max_size=6),
)
def test_byte_mutations_never_crash(pos, cut, insert):
    _load(MINIMAL[:pos] + insert + MINIMAL[pos + cut :])


@SETTINGS
@given(st.data())
def test_value_replacement_gives_located_problems(data):
    """Replace one value of the valid inventory by a random YAML value: it either still
    loads or fails with problems that name a line inside the file."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    root = yaml.load(MINIMAL)
    node = root
    # walk down to a random mapping and replace one of its values
    while True:
        keys = list(node)
        key = data.draw(st.sampled_from(keys))
        child = node[key]
        if isinstance(child, dict) and child and data.draw(st.booleans()):
            node = child
            continue
        node[key] = data.draw(yaml_values)
        break
    import io

    buf = io.StringIO()
    try:
        yaml.dump(root, buf)
    except Exception:
        return  # not representable as YAML; nothing to load
    text = buf.getvalue()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "inv.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            static_checks(load_inventory(path))
        except InputError as exc:
            nlines = text.count("\n") + 1
            for p in exc.problems:
                assert p.location.file == str(path)
                if p.location.line:
                    assert 1 <= p.location.line <= nlines, str(p)
