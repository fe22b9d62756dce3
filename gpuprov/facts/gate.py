"""A command gate run on a host: its exit status and output are the fact's data."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from pyinfra.api import FactBase

_RC = "@@gpuprov:rc "


@dataclass(frozen=True)
class CommandOutcome:
    rc: int
    output: str


class GateCommand(FactBase[CommandOutcome]):
    """Run a gate command; never fails as a fact (the exit status is the data)."""

    def command(self, script: str, timeout: int) -> str:
        run = f"timeout {int(timeout)} sh -c {shlex.quote(script)}"
        return f'out=$({run} 2>&1 </dev/null); rc=$?; printf \'%s\\n{_RC}%s\\n\' "$out" "$rc"'

    def process(self, output: list[str]) -> CommandOutcome:
        rc = 255
        body = []
        for line in output:
            if line.startswith(_RC):
                rc = int(line[len(_RC) :].strip() or 255)
            else:
                body.append(line)
        return CommandOutcome(rc, "\n".join(body).strip())
