"""`nvidia-smi --query-gpu=... --format=csv[,noheader][,nounits]` -> list of typed dicts.

With a header, column names come from it ("memory.total [MiB]" -> "memory.total"); with
`noheader` the caller passes the field list it queried. Values: "[N/A]", "[Not Supported]"
and any other bracketed message -> None; "81559 MiB" / "81559" -> 81559; "69.85 W" ->
69.85; everything else stays a string ("Enabled", "0x233010DE", "NVIDIA H100 80GB HBM3").
"""

from __future__ import annotations

import csv
import io
import re

from gpuprov.parsers import ParseError, is_na

SOURCE = "nvidia-smi --query-gpu --format=csv"
Value = int | float | str | None
_UNIT = re.compile(r"\s*\[[^\]]*\]$")
_NUMBER = re.compile(r"^(-?\d+(?:\.\d+)?)(?: ?(?:MiB|KiB|GiB|W|MHz|%|C|KB/s|MB/s|us|ms))?$")


def parse_query_csv(text: str, fields: list[str] | None = None) -> list[dict[str, Value]]:
    rows = [r for r in csv.reader(io.StringIO(text), skipinitialspace=True) if r]
    if not rows:
        raise ParseError(SOURCE, "empty output")
    if fields is None:
        header, body = rows[0], rows[1:]
        names = [_UNIT.sub("", h.strip()) for h in header]
        if not names or any(not n or " " in n for n in names):
            raise ParseError(
                SOURCE, f"first line is not a field header: {','.join(header)[:120]!r}", 1
            )
        first_data = 2
    else:
        names, body, first_data = list(fields), rows, 1
    out: list[dict[str, Value]] = []
    for lineno, row in enumerate(body, first_data):
        if len(row) != len(names):
            raise ParseError(SOURCE, f"{len(row)} values for {len(names)} fields", lineno)
        out.append({n: convert(v) for n, v in zip(names, row, strict=True)})
    return out


def convert(raw: str) -> Value:
    v = raw.strip()
    if is_na(v):
        return None
    m = _NUMBER.match(v)
    if m:
        num = m.group(1)
        return float(num) if "." in num else int(num)
    return v
