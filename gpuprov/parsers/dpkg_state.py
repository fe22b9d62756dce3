"""dpkg's own view of an interrupted install: `dpkg --audit` plus who holds its locks.

After an SSH drop or a kill mid-install, packages are left unpacked but not configured
(or half-configured, half-installed, triggers pending), and every later apt run fails
with "dpkg was interrupted, you must manually run 'dpkg --configure -a'"; or the dpkg
that was cut off from its terminal is still running and holds the lock. host_state.sh
prints `dpkg --audit`'s report (empty when all is well) and one `lock PID PATH` line per
process holding /var/lib/dpkg/lock*.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gpuprov.parsers import ParseError

# dpkg --audit lists each package as " name  description" under a paragraph saying what
# is wrong; names are Debian package names, optionally with :arch.
_PACKAGE = re.compile(r" ([a-z0-9][a-z0-9+.-]*(?::[a-z0-9-]+)?)(?: +.*)?")
_LOCK = re.compile(r"lock ([0-9]{1,10}) (/var/lib/dpkg/lock[a-z-]*)")


@dataclass
class DpkgState:
    interrupted: list[str] = field(default_factory=list)  # packages dpkg --audit names
    lock_holders: dict[int, str] = field(default_factory=dict)  # pid -> lock file
    audit: str = ""  # dpkg's report, for the message

    @property
    def clean(self) -> bool:
        return not self.interrupted and not self.lock_holders and not self.audit


def parse_dpkg_state(text: str) -> DpkgState:
    state = DpkgState()
    report: list[str] = []
    for line in text.splitlines():
        if m := _LOCK.fullmatch(line):
            state.lock_holders[int(m.group(1))] = m.group(2)
        elif line.startswith("lock "):
            raise ParseError("dpkg", f"unexpected lock line {line!r}")
        elif line.strip():
            report.append(line)
            if (m := _PACKAGE.fullmatch(line)) and m.group(1) not in state.interrupted:
                state.interrupted.append(m.group(1))
    state.audit = "\n".join(report)
    if report and not state.interrupted:
        # dpkg complained about something we cannot name a package for: still not clean
        # (`dpkg --configure -a` is the remedy dpkg itself gives for every audit finding).
        state.interrupted.append("(see dpkg --audit)")
    return state
