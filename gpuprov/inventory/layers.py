"""Read the `stack:` and `ssh:` sections that may appear at cluster, group and host level
into layers ({field: (value, Location)}), and merge them cluster < group < host."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap

from gpuprov.errors import Location
from gpuprov.inventory.model import DriverPin, SSHSettings, Stack
from gpuprov.inventory.reader import Missing, Reader
from gpuprov.safe_values import SSH_PATH_RE, user_problem

STACK_KEYS = ("driver", "cuda", "cuda_default", "container_runtime", "dcgm", "os")
DRIVER_KEYS = ("branch", "version", "modules")
SSH_KEYS = ("user", "port", "key", "known_hosts", "sudo", "sudo_password_env", "connect_timeout")
# Keys people reach for that would put a secret in the file.
SECRET_KEYS = ("sudo_password", "password", "become_password", "ssh_password")

BRANCH_RE = re.compile(r"\d{3,4}", re.ASCII)  # fullmatch: `$` accepts a final newline
VERSION_RE = re.compile(r"\d{3,4}\.\d{1,3}(\.\d{1,3})?", re.ASCII)
CUDA_RE = re.compile(r"\d{2}\.\d{1,2}", re.ASCII)
ENV_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

Layer = dict[str, Any]


def read_stack(r: Reader, node: CommentedMap, where: str) -> Layer:
    from gpuprov.tables import os_ids

    r.check_keys(node, STACK_KEYS, where)
    layer: Layer = {"_loc": r.node_loc(node)}
    driver = r.mapping(node, "driver", where)
    if driver is not None:
        dw = f"{where}.driver"
        r.check_keys(driver, DRIVER_KEYS, dw)
        d: Layer = {"_loc": r.key_loc(node, "driver")}
        branch = r.string(driver, "branch", dw)
        if branch is not Missing:
            if BRANCH_RE.fullmatch(branch):
                d["branch"] = (branch, r.value_loc(driver, "branch"))
            else:
                r.error(
                    r.value_loc(driver, "branch"),
                    f'{dw}.branch: expected a driver branch like "580", got {branch!r}',
                )
                d["branch"] = (None, r.value_loc(driver, "branch"))  # reported: no follow-on errors
        version = r.string(driver, "version", dw)
        if version is not Missing:
            if VERSION_RE.fullmatch(version):
                d["version"] = (version, r.value_loc(driver, "version"))
            else:
                r.error(
                    r.value_loc(driver, "version"),
                    f'{dw}.version: expected a full driver version like "580.95.05", got {version!r}',
                )
                d["version"] = (None, r.value_loc(driver, "version"))
        modules = r.string(driver, "modules", dw, ("auto", "open", "proprietary"))
        if modules is not Missing:
            d["modules"] = (modules, r.value_loc(driver, "modules"))
        layer["driver"] = d
    cuda = r.string_list(node, "cuda", where)
    if cuda is not Missing:
        good = True
        for i, v in enumerate(cuda):
            if not CUDA_RE.fullmatch(v):
                good = False
                loc = (
                    r.value_loc(node["cuda"], i)
                    if isinstance(node["cuda"], list)
                    else r.value_loc(node, "cuda")
                )
                r.error(loc, f'{where}.cuda: expected a CUDA version like "12.8", got {v!r}')
        if good:
            layer["cuda"] = (tuple(cuda), r.value_loc(node, "cuda"))
    default = r.string(node, "cuda_default", where)
    if default is not Missing:
        layer["cuda_default"] = (default, r.value_loc(node, "cuda_default"))
    runtime = r.string(node, "container_runtime", where, ("docker", "podman", "containerd", "none"))
    if runtime is not Missing:
        layer["container_runtime"] = (runtime, r.value_loc(node, "container_runtime"))
    dcgm = r.boolean(node, "dcgm", where)
    if dcgm is not Missing:
        layer["dcgm"] = (dcgm, r.value_loc(node, "dcgm"))
    os_id = r.string(node, "os", where, os_ids())
    if os_id is not Missing:
        layer["os"] = (os_id, r.value_loc(node, "os"))
    return layer


def read_ssh(r: Reader, node: CommentedMap, where: str, base: Path) -> Layer:
    for key in SECRET_KEYS:
        if key in node:
            r.error(
                r.key_loc(node, key),
                f"{where}.{key}: secrets never go in the inventory; set `sudo_password_env` to the "
                "name of an environment variable holding the password (default GPUPROV_SUDO_PASSWORD), "
                "or let gpuprov prompt",
            )
    r.check_keys(node, SSH_KEYS, where, also_ok=SECRET_KEYS)
    layer: Layer = {"_loc": r.node_loc(node)}
    for key in ("user", "sudo_password_env"):
        v = r.string(node, key, where)
        if v is Missing:
            continue
        if not v or (key == "sudo_password_env" and not ENV_RE.fullmatch(v)):
            r.error(r.value_loc(node, key), f"{where}.{key}: expected a non-empty name, got {v!r}")
            continue
        if key == "user" and user_problem(v):
            # "-oProxyCommand=..." would be an ssh option in the hook runner's argv.
            r.error(r.value_loc(node, key), f"{where}.user: {user_problem(v)}, got {v!r}")
            continue
        layer[key] = (v, r.value_loc(node, key))
    for key in ("key", "known_hosts"):
        v = r.string(node, key, where)
        if v is Missing:
            continue
        if not SSH_PATH_RE.fullmatch(v):
            # Both go into ssh options and the generated ssh_config, unquoted.
            r.error(r.value_loc(node, key), f"{where}.{key}: the path must not contain spaces, "
                    f"quotes, '#', '%', '\\' or control characters, got {v!r}")  # fmt: skip
            continue
        layer[key] = (resolve_path(v, base), r.value_loc(node, key))
    port = r.integer(node, "port", where, 1, 65535)
    if port is not Missing:
        layer["port"] = (port, r.value_loc(node, "port"))
    timeout = r.integer(node, "connect_timeout", where, 1, 3600)
    if timeout is not Missing:
        layer["connect_timeout"] = (timeout, r.value_loc(node, "connect_timeout"))
    sudo = r.boolean(node, "sudo", where)
    if sudo is not Missing:
        layer["sudo"] = (sudo, r.value_loc(node, "sudo"))
    return layer


def resolve_path(value: str, base: Path) -> Path:
    """`~` expanded; relative paths are relative to the inventory file's folder."""
    p = Path(os.path.expanduser(value))
    return p if p.is_absolute() else Path(os.path.normpath(base / p))


def merge(*layers: Layer | None) -> Layer:
    out: Layer = {}
    for layer in layers:
        if not layer:
            continue
        for key, value in layer.items():
            if key == "driver":
                out["driver"] = {**out.get("driver", {}), **value}
            else:
                out[key] = value
    return out


def build_ssh(layer: Layer, base: Path) -> SSHSettings:
    kwargs = {k: v[0] for k, v in layer.items() if k in SSH_KEYS}
    # Default known_hosts sits beside the inventory, like an explicit relative one.
    kwargs.setdefault("known_hosts", base / "known_hosts")
    return SSHSettings(**kwargs)


def build_stack(r: Reader, layer: Layer, host_loc: Location, host: str) -> Stack | None:
    """The resolved Stack of one GPU host; None (with problems recorded) when incomplete."""
    d = layer.get("driver", {})
    ok = True
    for key in ("branch", "version"):
        if key not in d:
            r.error(host_loc, f"host {host!r}: no driver {key}; set cluster.stack.driver.{key}")
            ok = False
    if not ok:
        return None
    (branch, _), (version, vloc) = d["branch"], d["version"]
    if branch is None or version is None:
        return None  # invalid value, already reported where it is written
    if not version.startswith(f"{branch}."):
        r.error(
            vloc,
            f'driver version {version!r} is not of branch {branch} (it must start with "{branch}.")',
        )
        ok = False
    cuda = layer.get("cuda", ((), None))[0]
    default, dloc = layer.get("cuda_default", (None, None))
    if default is not None and default not in cuda:
        r.error(dloc, f"cuda_default {default!r} is not in cuda ({', '.join(cuda) or 'empty'})")
        ok = False
    if not ok:
        return None
    driver_loc = d["version"][1]
    pin = DriverPin(branch, version, d.get("modules", ("auto", None))[0], d.get("_loc", driver_loc))
    return Stack(
        driver=pin,
        cuda=tuple(cuda),
        cuda_default=default if default is not None else (cuda[-1] if cuda else None),
        container_runtime=layer.get("container_runtime", ("containerd", None))[0],
        dcgm=layer.get("dcgm", (True, None))[0],
        location=layer.get("_loc", host_loc),
        os=layer.get("os", (None, None))[0],
        cuda_location=layer.get("cuda", (None, None))[1] or host_loc,
    )
