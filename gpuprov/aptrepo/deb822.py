"""Minimal deb822 (RFC822-like) paragraph reading and writing, order preserving.

Values keep their continuation lines verbatim (" ..." lines joined with "\n"), so a
package's multi-line Description survives the round trip into Packages byte for byte.
"""

from __future__ import annotations

import re

# A field line, fullmatched: the name is printable ASCII except ":".
_FIELD = re.compile(r"([!-9;-~][!-9;-~]*):[ \t]*(.*)")


def parse_paragraphs(text: str, *, source: str = "<text>") -> list[dict[str, str]]:
    """Split deb822 text into paragraphs of {field: value}. Raises ValueError with the
    1-based line number of the first malformed line."""
    paragraphs: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last: str | None = None
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            if current:
                paragraphs.append(current)
            current, last = {}, None
            continue
        if line[0] in " \t":
            if last is None:
                raise ValueError(f"{source}:{lineno}: continuation line without a field")
            current[last] += "\n" + line
            continue
        match = _FIELD.fullmatch(line)
        if not match:
            raise ValueError(f"{source}:{lineno}: expected 'Field: value', got {line!r}")
        last = match.group(1)
        if last in current:
            raise ValueError(f"{source}:{lineno}: field {last} repeated")
        current[last] = match.group(2).rstrip()
    if current:
        paragraphs.append(current)
    return paragraphs


def format_paragraph(fields: dict[str, str]) -> str:
    """One paragraph, fields in the dict's order, ending with a newline."""
    return "".join(f"{name}: {value}\n" for name, value in fields.items())
