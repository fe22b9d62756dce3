"""Host and user text on the terminal: always literal, never markup or escape sequences.

Host names, error messages, hook and command output come from inventories and hosts. rich
parses a plain string as markup (`[/etc/cdi/nvidia.yaml]` raises MarkupError, `[red]`
restyles), and a raw ESC byte lets a host's output drive the operator's terminal. Every
table cell and message that may carry such text goes through `cell`/`plain`.
"""

from __future__ import annotations

import re
from typing import Any

from rich.text import Text

# C0 controls but tab and newline, DEL, and the C1 range (8-bit CSI among them).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def plain(value: Any) -> str:
    """`value` as text with control characters shown as \\xNN, never sent raw."""
    text = "" if value is None else str(value)
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def cell(value: Any, style: str = "") -> Text:
    """A rich renderable showing `value` literally (no markup parsing), with `style`."""
    return Text(plain(value), style=style)
