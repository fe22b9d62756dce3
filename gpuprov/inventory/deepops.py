"""DeepOps' GPU-stack variables in an Ansible inventory, as gpuprov variables.

A DeepOps site pins its driver and CUDA with the variables of DeepOps' roles
(`nvidia_driver_branch`, `nvidia_driver_package_version`, `cuda_version`, ...). Each is
either rewritten into the `gpuprov_*` variable `ansible.to_native` maps onto `stack:`,
or dropped with a warning that names it and says why (gpuprov/data/deepops_vars.yaml).
Boolean variables are read as Ansible reads them (`yes`, `true`, `on`, `1`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

# Ansible's `boolean()` (ansible.module_utils.parsing.convert_bool)
TRUE = frozenset(("y", "yes", "on", "1", "true", "t"))
FALSE = frozenset(("n", "no", "off", "0", "false", "f"))
BOOLEAN_VARS = ("ansible_become", "gpuprov_dcgm")


@dataclass
class Translation:
    vars: list[tuple[str, Any]] = field(default_factory=list)  # (gpuprov variable, value)
    warnings: list[str] = field(default_factory=list)


@cache
def _table() -> dict[str, Any]:
    from gpuprov.tables import _read

    return _read("deepops_vars.yaml")


def known() -> tuple[list[str], list[str]]:
    """(mapped variable names, ignored variable names)."""
    t = _table()
    return sorted(t["mapped"]), sorted(t["ignored"])


def boolean(value: Any) -> Any:
    """Ansible's reading of a boolean; the value unchanged when it is not one (the loader
    then reports it, located)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE | FALSE:
        return value.strip().lower() in TRUE
    return value


def translate(key: Any, value: Any) -> Translation | None:
    """What `key: value` becomes; None when `key` is not a DeepOps GPU-stack variable."""
    if key in BOOLEAN_VARS:
        return Translation([(key, boolean(value))])
    t = _table()
    if key in t["ignored"]:
        return Translation(warnings=[f"DeepOps variable ignored: {t['ignored'][key]}"])
    rule = t["mapped"].get(key)
    if rule is None:
        return None
    return _CONVERT[rule["convert"]](rule["to"], value)


def _branch(to: str, value: Any) -> Translation:
    # the role's branch may carry the Ubuntu flavour: "580-server", "580-open"
    m = re.fullmatch(r"(\d{3,4})(-server)?(-open)?", str(value).strip())
    if m is None:
        return Translation([(to, value)])  # the loader reports the bad branch, located
    out = Translation([(to, m.group(1))])
    if m.group(3):
        out.vars.append(("gpuprov_driver_modules", "open"))
    return out


def _package_version(to: str, value: Any) -> Translation:
    text = str(value).strip()
    if not text:
        return Translation(warnings=["empty: DeepOps installs the newest driver of the "
                                     "branch; gpuprov pins one, set gpuprov_driver_version"])  # fmt: skip
    # "580.95.05-1", "580.95.05-0ubuntu1": the package revision is not the driver version
    m = re.fullmatch(r"(\d{3,4}\.\d{1,3}(?:\.\d{1,3})?)(?:-[0-9A-Za-z.+~]+)?", text)
    return Translation([(to, m.group(1) if m else value)])


def _cuda_package(to: str, value: Any) -> Translation:
    text = str(value).strip()
    m = re.fullmatch(r"(?:cuda-toolkit-|cuda-)?(\d{2})[-.](\d{1,2})", text)
    if m is None:
        if text in ("cuda", "cuda-toolkit"):
            return Translation(warnings=[f"{text!r} means the newest CUDA; gpuprov pins "
                                         'toolkits, set gpuprov_cuda (e.g. ["12.8"])'])  # fmt: skip
        return Translation([(to, value)])  # reported by the loader, located
    return Translation([(to, [f"{m.group(1)}.{m.group(2)}"])])


def _boolean(to: str, value: Any) -> Translation:
    return Translation([(to, boolean(value))])


def _runtime(to: str, value: Any) -> Translation:
    if value in ("docker", "containerd"):
        return Translation([(to, value)])
    return Translation(warnings=[f"{value!r} is not a runtime gpuprov installs (docker, "
                                 "containerd); set gpuprov_container_runtime"])  # fmt: skip


_CONVERT = {
    "branch": _branch,
    "package_version": _package_version,
    "cuda_package": _cuda_package,
    "boolean": _boolean,
    "runtime": _runtime,
}
