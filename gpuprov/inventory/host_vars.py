"""Checks on group and host `vars:`: free-form data for deploys, but not a back door.

Two rules (docs/security.md):
- A `vars` key may not be one pyinfra reads as a connection or execution setting
  (`ssh_config_file` whose ProxyCommand runs on the control node, `ssh_forward_agent`,
  `_sudo_user`, `_env`...): those come only from the inventory's `ssh:` section, which
  gpuprov validates and pre-sets.
- The values of the `gpuprov_*` vars that deploys write into files or commands on the
  hosts are validated here, with the line they are on, before anything connects.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ruamel.yaml.comments import CommentedMap

from gpuprov.inventory.reader import Reader, type_name
from gpuprov.safe_values import (
    ABS_PATH_RE,
    DEB_VERSION_RE,
    IMAGE_RE,
    TOKEN_RE,
    host_port_problem,
    url_problem,
)

# pyinfra's global arguments are `_`-prefixed (`_sudo`, `_sudo_user`, `_su_user`, `_env`,
# `_shell_executable`, `_chdir`...) and its connectors read `<connector>_*` host data.
CONNECTION_KEY_RE = re.compile(
    r"_.*|(?:ssh|winrm|docker|dockerssh|chroot|local|vagrant|terraform)_.*", re.S
)
MIRROR_CLIENT_KEYS = (
    "apt_url", "suite", "keyring", "components", "registry", "registry_scheme", "hf_endpoint",
    "rpm_url", "rpm_keys",
)  # fmt: skip

Check = Callable[[Any], str | None]


def _string(check: Check) -> Check:
    def run(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            return f"expected a string, got {type_name(value)}"
        return check(str(value))

    return run


def _token(value: str) -> str | None:
    return (
        None if TOKEN_RE.fullmatch(value) else "expected letters, digits, '.', '+', '_', '~', '-'"
    )


def _version(value: str) -> str | None:
    return None if DEB_VERSION_RE.fullmatch(value) else "expected a package version like 1:4.4.1-1"


def _abs_path(value: str) -> str | None:
    if ABS_PATH_RE.fullmatch(value):
        return None
    return "expected an absolute path of letters, digits and . _ + @ , = - (no spaces or quotes)"


def _image(value: str) -> str | None:
    if IMAGE_RE.fullmatch(value):
        return None
    return "expected an image reference like registry:5000/nvidia/cuda:12.8.0-base"


def _scheme(value: str) -> str | None:
    return None if value in ("http", "https") else "expected http or https"


def _path_on_control_node(value: str) -> str | None:
    return None if value and "\n" not in value and "\0" not in value else "expected a file path"


MIRROR_CLIENT_CHECKS: dict[str, Check] = {
    "apt_url": _string(lambda v: url_problem(v, ("http", "https", "file"))),
    "hf_endpoint": _string(lambda v: url_problem(v, ("http", "https"))),
    "registry": _string(host_port_problem),
    "registry_scheme": _string(_scheme),
    "suite": _string(_token),
    "keyring": _string(_path_on_control_node),
    "rpm_url": _string(lambda v: url_problem(v, ("http", "https", "file"))),
    "rpm_keys": _string(_path_on_control_node),
}
VALUE_CHECKS: dict[str, Check] = {
    "gpuprov_root": _string(_abs_path),
    "gpuprov_verify_image": _string(_image),
    "gpuprov_dcgm_version": _string(_version),
}


def check_vars(r: Reader, node: CommentedMap, where: str) -> None:
    """Report refused keys and bad values of one `vars:` mapping."""
    for key in node:
        if not isinstance(key, str):
            continue
        loc = r.key_loc(node, key)
        if CONNECTION_KEY_RE.fullmatch(key):
            r.error(loc, f"{where}.vars.{key}: connection and sudo settings cannot be set in "
                    "`vars` (pyinfra would obey them); use the `ssh:` section (user, port, key, "
                    "known_hosts, sudo, sudo_password_env, connect_timeout)")  # fmt: skip
            continue
        value = node[key]
        if key == "gpuprov_mirror_client":
            _check_mirror_client(r, node, where)
        elif key in VALUE_CHECKS and value is not None:
            why = VALUE_CHECKS[key](value)
            if why:
                r.error(r.value_loc(node, key), f"{where}.vars.{key}: {why}, got {value!r}")


def _check_mirror_client(r: Reader, node: CommentedMap, where: str) -> None:
    value = node["gpuprov_mirror_client"]
    w = f"{where}.vars.gpuprov_mirror_client"
    if value is None:
        return
    if not isinstance(value, CommentedMap):
        r.error(r.value_loc(node, "gpuprov_mirror_client"), f"{w}: expected a mapping, got {type_name(value)}")  # fmt: skip
        return
    r.check_keys(value, MIRROR_CLIENT_KEYS, w)
    for key, check in MIRROR_CLIENT_CHECKS.items():
        if key in value and value[key] is not None:
            why = check(value[key])
            if why:
                r.error(r.value_loc(value, key), f"{w}.{key}: {why}, got {value[key]!r}")
    comps = value.get("components")
    if comps is not None:
        items = comps if isinstance(comps, list) else [comps]
        for item in items:
            why = _string(_token)(item)
            if why:
                r.error(r.value_loc(value, "components"), f"{w}.components: {why}, got {item!r}")
