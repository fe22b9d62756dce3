"""Debian version comparison (Debian Policy 5.6.12), as `dpkg --compare-versions` does it.

Needed to refuse downgrades at plan time without a round trip to the host.
"""

from __future__ import annotations

import re
from functools import cmp_to_key

_SPLIT = re.compile(r"^(?:(\d+):)?(.*?)(?:-([^-]*))?$")


def _order(c: str) -> int:
    if c == "~":
        return -1
    if c.isdigit():
        return 0
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def _compare_part(a: str, b: str) -> int:
    i = j = 0
    while i < len(a) or j < len(b):
        first_diff = 0
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _order(a[i]) if i < len(a) and not a[i].isdigit() else 0
            bc = _order(b[j]) if j < len(b) and not b[j].isdigit() else 0
            if ac != bc:
                return -1 if ac < bc else 1
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first_diff:
            return -1 if first_diff < 0 else 1
    return 0


def compare(a: str, b: str) -> int:
    """-1, 0 or 1 as Debian version `a` sorts before, equal to or after `b`."""
    ma, mb = _SPLIT.match(a.strip()), _SPLIT.match(b.strip())
    assert ma and mb  # the pattern matches any string
    ea, eb = int(ma[1] or 0), int(mb[1] or 0)
    if ea != eb:
        return -1 if ea < eb else 1
    return _compare_part(ma[2], mb[2]) or _compare_part(ma[3] or "", mb[3] or "")


sort_key = cmp_to_key(compare)
