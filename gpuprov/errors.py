"""Typed errors raised by the engine; the CLI turns them into messages and exit codes.

The engine never imports click and never calls sys.exit: the CLI maps these errors to
messages and exit codes in one place, its root group (cli/__init__.py).
Exit codes are documented in docs/exit-codes.md.
"""

from __future__ import annotations

from dataclasses import dataclass


class ExitCode:
    OK = 0
    HOSTS_FAILED = 1  # the run finished, but at least one host failed or a check failed
    BAD_INPUT = 2  # inventory or arguments invalid; nothing touched a host
    CONNECT_FAILED = 3  # no host could be reached / host keys unknown
    ROLLOUT_HALTED = 4  # a staged rollout stopped at a health gate or max_fail
    LOCKED = 5  # another rollout of the same inventory holds the lock
    INTERNAL = 70  # an unexpected error: a bug (rerun with --debug for the traceback)
    INTERRUPTED = 130


@dataclass(frozen=True)
class Location:
    """A place in an input file, 1-based, for FILE:LINE:COL messages."""

    file: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.col or 1}"
        return self.file


@dataclass(frozen=True)
class Problem:
    """One located finding: an inventory error, a failed static check, etc."""

    location: Location
    message: str
    severity: str = "error"  # error | warning

    def __str__(self) -> str:
        return f"{self.location}: {self.severity}: {self.message}"


class GpuprovError(Exception):
    """Base of all expected errors. `exit_code` says how the CLI ends."""

    exit_code = ExitCode.HOSTS_FAILED


class InputError(GpuprovError):
    """Bad input (file, argument). Carries every problem found, not just the first."""

    exit_code = ExitCode.BAD_INPUT

    def __init__(self, problems: list[Problem] | str):
        if isinstance(problems, str):
            problems = [Problem(Location("<input>"), problems)]
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class ConnectError(GpuprovError):
    exit_code = ExitCode.CONNECT_FAILED


class RolloutHalted(GpuprovError):
    exit_code = ExitCode.ROLLOUT_HALTED


class LockedError(GpuprovError):
    exit_code = ExitCode.LOCKED
