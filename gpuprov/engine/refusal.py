"""How a deploy refuses a host (every reason, each with its fix) or warns about it.

A deploy raises `HostRefused` before it adds any operation for the host; the engine
catches it per host, marks the host refused and carries on with the others. Preflight
evaluates all its checks first and raises once, with every refusal, most fundamental
first, so one run tells the operator everything wrong with the host. Warnings are
collected on the pyinfra State so plan/apply can print them once per host.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gpuprov.errors import ExitCode, GpuprovError


@dataclass(frozen=True)
class Refusal:
    """One reason a host cannot be deployed. `code` is the stable name of the check
    (what `gpuprov_preflight_ignore` takes); None when no override exists."""

    reason: str
    fix: str | None = None
    code: str | None = None

    def __str__(self) -> str:
        tag = f"[{self.code}] " if self.code else ""
        return f"{tag}{self.reason} — {self.fix}" if self.fix else f"{tag}{self.reason}"


class HostRefused(GpuprovError):
    exit_code = ExitCode.HOSTS_FAILED

    def __init__(self, reason: str, fix: str | None = None, *, code: str | None = None):
        self.refusals: list[Refusal] = [Refusal(reason, fix, code)]
        super().__init__(self._line())

    @classmethod
    def every(cls, refusals: Sequence[Refusal]) -> HostRefused:
        """One refusal carrying all of `refusals`, in the order given."""
        if not refusals:
            raise ValueError("HostRefused.every needs at least one refusal")
        exc = cls(refusals[0].reason, refusals[0].fix, code=refusals[0].code)
        exc.refusals = list(refusals)
        exc.args = (exc._line(),)
        return exc

    @property
    def reason(self) -> str:
        return self.refusals[0].reason

    @property
    def fix(self) -> str | None:
        return self.refusals[0].fix

    def _line(self) -> str:
        """One line, for logs and the rollout's failure table."""
        if len(self.refusals) == 1:
            r = self.refusals[0]
            return f"{r.reason} — {r.fix}" if r.fix else r.reason
        return f"{len(self.refusals)} problems: " + "; ".join(str(r) for r in self.refusals)

    def __str__(self) -> str:
        return self._line()


def warn(text: str) -> None:
    """Record a warning for the host the current deploy runs for."""
    from pyinfra.context import ctx_host, ctx_state

    state, host = ctx_state.get(), ctx_host.get()
    warnings = state.__dict__.setdefault("gpuprov_warnings", {})
    host_warnings = warnings.setdefault(host.name, [])
    if text not in host_warnings:  # deploys run once per plan; keep each warning once
        host_warnings.append(text)


def warnings_for(state: object, name: str) -> list[str]:
    return list(getattr(state, "gpuprov_warnings", {}).get(name, []))
