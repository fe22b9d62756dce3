"""Read-only self-inspection of the machine gpuprov runs on, for scripts/gpu-capture.sh.

`gpuprov lab capture facts` runs the same HostState script the `facts` command runs over
SSH, here with /bin/sh, and prints the parsed result as JSON. `... verify` adds the verdict against the system profile whose GPU model and count match what nvidia-smi reports
(the expected driver is the one reported: on a lent machine we check parsing, not pins).
Nothing here changes GPU or host state.
"""

from __future__ import annotations

import dataclasses
import subprocess

from gpuprov.facts.host_state import SCRIPT, HostStateData, parse_host_state
from gpuprov.tables import SystemProfile, profiles
from gpuprov.verify.verdicts import verdict


def local_host_state() -> HostStateData:
    out = subprocess.run(["/bin/sh", "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    return parse_host_state(out.stdout)


def matching_profile(state: HostStateData) -> SystemProfile | None:
    report = state.nvidia_smi.report
    if report is None or not report.gpus:
        return None
    model, count = report.gpus[0].product_name, len(report.gpus)
    for profile in profiles().values():
        names = {profile.gpu_model, *getattr(profile, "gpu_models", ())}
        if model in names and profile.gpu_count == count:
            return profile
    for profile in profiles().values():  # fall back to the model alone (e.g. a 1-GPU slice)
        if model in {profile.gpu_model, *getattr(profile, "gpu_models", ())}:
            return profile
    return None


def to_jsonable(obj: object) -> object:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {k: to_jsonable(v) for k, v in dataclasses.asdict(obj).items()}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set):
        return [to_jsonable(v) for v in obj]
    return obj


def local_verdict(state: HostStateData) -> dict[str, object]:
    """The verdict against the profile matching this machine's GPUs, with the driver it
    reports as the expected one; {"profile": None, "error": ...} when none matches."""
    profile = matching_profile(state)
    report = state.nvidia_smi.report
    result: dict[str, object] = {"profile": profile.name if profile else None}
    if profile is None:
        result["error"] = "no system profile matches this host's GPUs"
    else:
        v = verdict(state, profile, report.driver_version if report else "")
        result.update(ok=v.ok, summary=v.summary(), checks=to_jsonable(v.checks))
    return result
