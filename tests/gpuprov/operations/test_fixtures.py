"""Every operation fixture under fixtures/<module>.<operation>/<case>.json
(args + facts -> exact commands and noop description) becomes one test, run by the
pyinfra-testing package's generic runner."""

from __future__ import annotations

from pathlib import Path

from pyinfra_testing.operations import make_operation_tests

FIXTURES = Path(__file__).resolve().parent / "fixtures"

for _folder in sorted(p for p in FIXTURES.iterdir() if p.is_dir()):
    _cls = make_operation_tests("gpuprov.operations", _folder.name, _folder)
    _name = "Test_" + _folder.name.replace(".", "_")
    _cls.__name__ = _cls.__qualname__ = _name
    globals()[_name] = _cls
del _cls
