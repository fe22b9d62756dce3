"""Host name ranges as Ansible writes them: `dgx[01:16]`, `gpu-[a:c]`, `n[1:9:2]`,
`r[1:2]n[01:04]` (several ranges multiply). Shared by the INI reader, the Ansible YAML
reader and gpuprov's own `range:` hosts, so `gpu[001:128]` means the same everywhere.

Semantics follow `ansible.plugins.inventory.expand_hostname_range` (checked against
ansible-inventory by tests/gpuprov/inventory/test_ansible_oracle.py): a start with a
leading zero pads every number to its width (and the end must have the same width);
letters range over a-z then A-Z; an empty start means 0; the end is included.
"""

from __future__ import annotations

import re
import string

# One bracketed range: [beg:end] or [beg:end:step]
RANGE_RE = re.compile(r"\[([^\[\]]*)\]")
MAX_HOSTS = 100_000  # bound one pattern: a typo like [1:1000000] is not a cluster


class RangeError(ValueError):
    """A malformed range; the message says what was expected."""


def has_range(pattern: str) -> bool:
    return "[" in pattern or "]" in pattern


def expand(pattern: str) -> list[str]:
    """Every host name `pattern` stands for, in order. RangeError when malformed."""
    if not has_range(pattern):
        return [pattern]
    m = RANGE_RE.search(pattern)
    if m is None:
        raise RangeError(f"{pattern!r}: unbalanced '[' or ']' (expected NAME[BEGIN:END])")
    head, body, tail = pattern[: m.start()], m.group(1), pattern[m.end() :]
    if "]" in head or "[" in head:
        raise RangeError(f"{pattern!r}: unbalanced '[' or ']' (expected NAME[BEGIN:END])")
    out: list[str] = []
    for item in _sequence(pattern, body):
        out.extend(expand(head + item + tail))
        if len(out) > MAX_HOSTS:
            raise RangeError(f"{pattern!r}: more than {MAX_HOSTS} hosts")
    return out


def _sequence(pattern: str, body: str) -> list[str]:
    bounds = body.split(":")
    if len(bounds) not in (2, 3):
        raise RangeError(f"{pattern!r}: a range is [BEGIN:END] or [BEGIN:END:STEP], got [{body}]")
    beg, end = bounds[0] or "0", bounds[1]
    step_s = bounds[2] if len(bounds) == 3 else "1"
    if not end:
        raise RangeError(f"{pattern!r}: the range [{body}] has no end")
    if not re.fullmatch(r"[1-9][0-9]{0,5}", step_s):
        raise RangeError(f"{pattern!r}: the step of [{body}] must be a positive number")
    step = int(step_s)
    letters = string.ascii_letters
    if re.fullmatch(r"[A-Za-z]", beg) and re.fullmatch(r"[A-Za-z]", end):
        i, j = letters.index(beg), letters.index(end)
        if i > j:
            raise RangeError(f"{pattern!r}: [{body}] begins after it ends")
        return list(letters[i : j + 1 : step])
    if not (re.fullmatch(r"[0-9]{1,9}", beg) and re.fullmatch(r"[0-9]{1,9}", end)):
        raise RangeError(
            f"{pattern!r}: [{body}] must range over numbers (01:16) or single letters (a:c)"
        )
    width = len(beg) if beg.startswith("0") and len(beg) > 1 else 0
    if width and len(end) != width:
        raise RangeError(
            f"{pattern!r}: [{body}]: a zero-padded range needs a begin and end of the same "
            f"width (e.g. [{beg}:{end.zfill(width)}])"
        )
    lo, hi = int(beg), int(end)
    if lo > hi:
        raise RangeError(f"{pattern!r}: [{body}] begins after it ends")
    if (hi - lo) // step + 1 > MAX_HOSTS:
        raise RangeError(f"{pattern!r}: more than {MAX_HOSTS} hosts")
    return [str(n).zfill(width) for n in range(lo, hi + 1, step)]
