"""Pure parsers of real NVIDIA and system tool output (no I/O, no hosts).

Each module turns one tool's output into typed dataclasses and raises `ParseError` on
output it does not recognise, so format drift is caught instead of silently read as "no
GPUs" or "no errors".
"""

from __future__ import annotations

from gpuprov.errors import GpuprovError


class ParseError(GpuprovError):
    """Tool output that does not have the expected shape.

    `source` names the tool/command ("nvidia-smi -q -x"), `line` is 1-based when known.
    """

    def __init__(self, source: str, message: str, line: int = 0):
        self.source = source
        self.line = line
        where = f"{source}, line {line}" if line else source
        super().__init__(f"cannot parse {where}: {message}")


# Values NVIDIA tools print when a field does not apply or cannot be read.
NA_VALUES = frozenset({"N/A", "[N/A]", "Not Supported", "[Not Supported]", "Unknown Error"})


def is_na(value: str | None) -> bool:
    if value is None:
        return True
    v = value.strip()
    # Any bracketed message ("[Requested functionality has been deprecated]") means "no value".
    return v == "" or v in NA_VALUES or (v.startswith("[") and v.endswith("]"))
