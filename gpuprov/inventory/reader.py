"""Typed, located reads from ruamel round-trip nodes that collect problems instead of
raising, so one `inventory check` reports every mistake in the file at once."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from gpuprov.errors import InputError, Location, Problem

Missing = object()


def type_name(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


class Reader:
    """Collects Problems for one file. Every read names the YAML node it came from."""

    def __init__(self, file: Path | str):
        self.file = str(file)
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self._seen: set[tuple[Location, str]] = set()

    # ---- locations -----------------------------------------------------------------------
    def loc(self, line0: int | None = None, col0: int | None = None) -> Location:
        if line0 is None:
            return Location(self.file)
        return Location(self.file, line0 + 1, (col0 or 0) + 1)

    def node_loc(self, node: Any) -> Location:
        lc = getattr(node, "lc", None)
        if lc is not None and lc.line is not None:
            return self.loc(lc.line, lc.col)
        return self.loc()

    def key_loc(self, parent: Any, key: Any) -> Location:
        try:
            line, col = parent.lc.key(key)
            return self.loc(line, col)
        except Exception:  # no position recorded (built in code): fall back to the parent
            return self.node_loc(parent)

    def value_loc(self, parent: Any, key: Any) -> Location:
        try:
            if isinstance(parent, CommentedSeq):
                line, col = parent.lc.item(key)
            else:
                line, col = parent.lc.value(key)
            return self.loc(line, col)
        except Exception:
            return self.node_loc(parent)

    # ---- reporting -----------------------------------------------------------------------
    def error(self, location: Location, message: str) -> None:
        if (location, message) not in self._seen:
            self._seen.add((location, message))
            self.problems.append(Problem(location, message))

    def warn(self, location: Location, message: str) -> None:
        self.warnings.append(Problem(location, message, "warning"))

    def raise_if_problems(self) -> None:
        if self.problems:
            ordered = sorted(self.problems, key=lambda p: (p.location.line, p.location.col))
            raise InputError(ordered)

    # ---- typed reads ---------------------------------------------------------------------
    def check_keys(
        self, node: CommentedMap, allowed: Iterable[str], where: str, also_ok: Iterable[str] = ()
    ) -> None:
        """Report keys not in `allowed` (with a suggestion); `also_ok` keys are reported
        elsewhere with a better message."""
        allowed = list(allowed)
        also_ok = set(also_ok)
        for key in node:
            if key in also_ok:
                continue
            if not isinstance(key, str):
                self.error(
                    self.key_loc(node, key), f"{where}: keys must be strings, got {type_name(key)}"
                )
            elif key not in allowed:
                self.error(
                    self.key_loc(node, key),
                    f"unknown key {key!r} in {where}{suggest(key, allowed)}"
                    f" (allowed: {', '.join(allowed)})",
                )

    def mapping(
        self, parent: Any, key: Any, where: str, required: bool = False
    ) -> CommentedMap | None:
        value = parent.get(key, Missing) if isinstance(parent, dict) else Missing
        if value is Missing or value is None:
            if required:
                self.error(self.node_loc(parent), f"{where}: missing required key {key!r}")
            return None
        if not isinstance(value, CommentedMap):
            self.error(
                self.value_loc(parent, key),
                f"{where}.{key}: expected a mapping, got {type_name(value)}",
            )
            return None
        return value

    def string(
        self, node: CommentedMap, key: str, where: str, choices: Iterable[str] | None = None
    ) -> Any:
        """A string (ints and floats are accepted and turned into strings: `branch: 580`)."""
        value = node.get(key, Missing)
        if value is Missing:
            return Missing
        if isinstance(value, bool) or value is None or not isinstance(value, str | int | float):
            self.error(
                self.value_loc(node, key),
                f"{where}.{key}: expected a string, got {type_name(value)}",
            )
            return Missing
        value = str(value)
        if choices is not None:
            choices = list(choices)
            if value not in choices:
                self.error(
                    self.value_loc(node, key),
                    f"{where}.{key}: {value!r} is not one of {', '.join(choices)}{suggest(value, choices)}",
                )
                return Missing
        return value

    def integer(
        self, node: CommentedMap, key: str, where: str, lo: int | None = None, hi: int | None = None
    ) -> Any:
        value = node.get(key, Missing)
        if value is Missing:
            return Missing
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(
                self.value_loc(node, key),
                f"{where}.{key}: expected an integer, got {type_name(value)}",
            )
            return Missing
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            bounds = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
            self.error(self.value_loc(node, key), f"{where}.{key}: must be {bounds}, got {value}")
            return Missing
        return int(value)

    def boolean(self, node: CommentedMap, key: str, where: str) -> Any:
        value = node.get(key, Missing)
        if value is Missing:
            return Missing
        if not isinstance(value, bool):
            self.error(
                self.value_loc(node, key),
                f"{where}.{key}: expected true or false, got {type_name(value)}",
            )
            return Missing
        return value

    def string_list(self, node: CommentedMap, key: str, where: str) -> Any:
        """A list of strings; a single string is accepted as a list of one."""
        value = node.get(key, Missing)
        if value is Missing:
            return Missing
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return [str(value)]
        if not isinstance(value, list):
            self.error(
                self.value_loc(node, key), f"{where}.{key}: expected a list, got {type_name(value)}"
            )
            return Missing
        out = []
        for i, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, str | int | float):
                self.error(
                    self.value_loc(value, i),
                    f"{where}.{key}[{i}]: expected a string, got {type_name(item)}",
                )
                return Missing
            out.append(str(item))
        return out
