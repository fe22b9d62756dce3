"""How a deploy refuses a host (one line: reason and fix) or warns about it.

A deploy raises `HostRefused` before it adds any operation for the host; the engine
catches it per host, marks the host failed and carries on with the others. Warnings are
collected on the pyinfra State so plan/apply can print them once per host.
"""

from __future__ import annotations

from gpuprov.errors import ExitCode, GpuprovError


class HostRefused(GpuprovError):
    exit_code = ExitCode.HOSTS_FAILED

    def __init__(self, reason: str, fix: str | None = None):
        self.reason = reason
        self.fix = fix
        super().__init__(f"{reason} — {fix}" if fix else reason)


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
