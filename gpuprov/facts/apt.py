"""apt and dpkg facts the operations and preflight read only when they need them."""

from __future__ import annotations

from pyinfra.api import FactBase


class AptHolds(FactBase[list[str]]):
    """Held packages, read from dpkg's selections (`apt-mark showhold` loads the apt
    cache, which takes seconds)."""

    default = list

    def requires_command(self) -> str:
        return "dpkg-query"

    def command(self) -> str:
        return (
            "dpkg-query -W -f='${db:Status-Want} ${Package}\\n' | awk '$1 == \"hold\" { print $2 }'"
        )

    def process(self, output: list[str]) -> list[str]:
        return sorted(line.strip() for line in output if line.strip())


class HeadersCandidate(FactBase):
    """The apt candidate of linux-headers-<running kernel>, or None. Only read when the
    headers are missing: apt-cache loads the whole package cache (seconds)."""

    def command(self) -> str:
        return (
            'apt-cache policy "linux-headers-$(uname -r)" 2>/dev/null '
            "| awk '/Candidate:/{print $2}'"
        )

    def process(self, output: list[str]) -> str | None:  # type: ignore[override]
        value = "".join(output).strip()
        return value if value and value != "(none)" else None
