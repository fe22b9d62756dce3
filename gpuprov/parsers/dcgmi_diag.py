"""`dcgmi diag -r N` (table output) -> tests with Pass/Fail/Skip/Warn and an overall verdict.

Rows are "| name | result |"; "|----- Section ---+---|" rows start a section; rows with an
empty name continue the previous cell (long messages wrap across rows); an "Error"/"Warning"
row holds the message for the test above it. Metadata rows (versions) go to `metadata`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gpuprov.parsers import ParseError

SOURCE = "dcgmi diag"
RESULTS = ("Pass", "Fail", "Skip", "Warn")
_SECTION = re.compile(r"^\|-+\s+(?P<name>[A-Za-z][A-Za-z ]*?)\s+-+\+-+\|$")
_ROW = re.compile(r"^\|(?P<name>[^|]*)\|(?P<value>.*)\|$")


@dataclass
class DiagTest:
    name: str
    section: str
    result: str  # Pass | Fail | Skip | Warn
    details: str = ""


@dataclass
class DcgmDiag:
    tests: list[DiagTest]
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.tests) and not any(t.result == "Fail" for t in self.tests)

    @property
    def failed(self) -> list[DiagTest]:
        return [t for t in self.tests if t.result == "Fail"]


def parse_dcgmi_diag(text: str) -> DcgmDiag:
    tests: list[DiagTest] = []
    meta: dict[str, str] = {}
    section = ""
    last_key: str | None = None  # where a continuation row's text goes
    saw_table = False
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line.startswith("|"):
            continue
        saw_table = True
        if m := _SECTION.match(line):
            section, last_key = m["name"].strip(), None
            continue
        m = _ROW.match(line)
        if not m:
            raise ParseError(SOURCE, f"unexpected table row {line[:80]!r}", lineno)
        name, value = m["name"].strip(), m["value"].strip()
        if name == "Diagnostic" and value == "Result":
            continue
        if not name:  # wrapped continuation of the previous cell
            if last_key == "meta" and meta:
                k = list(meta)[-1]
                meta[k] += value
            elif last_key == "test" and tests:
                tests[-1].details += _chunk(m["value"])
            continue
        if section == "Metadata":
            meta[name], last_key = value, "meta"
            continue
        if name in ("Error", "Warning", "Info") and tests:
            tests[-1].details = tests[-1].details.rstrip()
            tests[-1].details += ("\n" if tests[-1].details else "") + _chunk(m["value"])
            last_key = "test"
            continue
        result = next((r for r in RESULTS if value.startswith(r)), None)
        if result is None:
            raise ParseError(
                SOURCE, f"test {name!r}: result {value!r} is not one of {RESULTS}", lineno
            )
        tests.append(DiagTest(name, section, result, value[len(result) :].strip(" -")))
        last_key = "test"
    if not saw_table or not tests:
        first = text.strip().splitlines()[0][:120] if text.strip() else "empty output"
        raise ParseError(SOURCE, f"no diagnostic results table (got: {first!r})")
    for t in tests:
        t.details = t.details.rstrip()
    return DcgmDiag(tests, meta)


def _chunk(cell: str) -> str:
    # dcgmi wraps long text at a fixed width, mid-word, then pads each cell with a space on
    # the left and two on the right: keep the chunk exactly so the pieces join back.
    if cell.startswith(" ") and cell.endswith("  "):
        return cell[1:-2]
    return cell.strip()
