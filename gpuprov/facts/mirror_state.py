"""What the mirror host's deploy compares against, as one more section of NodeFacts (so a
converged mirror host, like a GPU host, costs one fact round trip per apply).

The section prints one `key value...` line per fact: the `current` link of the bundle
root, which OS repositories the bundle has, the host's Python and the digest of the
bundle's requirements file for it, the installed venv, the service user, the packages,
the units' states and the registry storages already written. File digests (units,
configurations, apt source) come from DeployExtras like every other managed file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gpuprov.facts.host_state import UNIT_STATES_SH
from gpuprov.paths import (
    MIRROR_BUNDLE_ROOT,
    MIRROR_PACKAGES,
    MIRROR_REGISTRY_ROOT,
    MIRROR_UNITS,
    MIRROR_USER,
    MIRROR_VENV_ROOT,
    PACKAGED_UNITS,
)

# What `current` may point at (gpuprov/bundle/importer.py writes exactly this).
CURRENT_RE = re.compile(r"bundles/([0-9a-f]{64})")
OS_ID_RE = re.compile(r"[a-z]+[0-9]+")
PYTHON_RE = re.compile(r"3\.[0-9]{1,2}")
SHA256_RE = re.compile(r"[0-9a-f]{64}")
VENV_RE = re.compile(r"venv-[0-9a-f]{16}")
PIP_WHEEL_RE = re.compile(r"pip-[0-9][0-9A-Za-z.]{0,40}-py3-none-any\.whl")
UNIT_STATE_RE = re.compile(r"[a-z-]{1,32}")


# "unit NAME ACTIVE ENABLED" per unit ("-": unknown): the shared unit_states function
# (gpuprov/facts/unit_states.sh, HostState's too), one `systemctl show` for all units.
def command() -> str:
    """The section's shell (POSIX sh, never fails; every path a constant of paths.py)."""
    units = " ".join(u.removesuffix(".service") for u in (*MIRROR_UNITS, *PACKAGED_UNITS))
    return f"""{UNIT_STATES_SH}
R={MIRROR_BUNDLE_ROOT}
_c=$(readlink "$R/current" 2>/dev/null); printf 'current %s\\n' "$_c"
_b=
case "$_c" in bundles/*) [ -f "$R/$_c/manifest.json" ] && _b="$R/$_c" ;; esac
if [ -n "$_b" ]; then
    printf 'bundle ok\\n'
    for _d in "$_b"/apt/*; do
        [ -f "$_d/dists/gpuprov/InRelease" ] && printf 'apt-os %s\\n' "${{_d##*/}}"
    done
fi
_py=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
printf 'python %s\\n' "$_py"
if [ -n "$_b" ] && [ -n "$_py" ] && [ -f "$_b/wheels/requirements-$_py.txt" ]; then
    printf 'wheels %s\\n' "$(sha256sum < "$_b/wheels/requirements-$_py.txt" | cut -d' ' -f1)"
fi
if [ -n "$_b" ]; then
    for _w in "$_b"/wheels/pip-*.whl; do [ -f "$_w" ] && printf 'pip %s\\n' "${{_w##*/}}"; done
fi
printf 'venv %s\\n' "$(readlink {MIRROR_VENV_ROOT}/venv 2>/dev/null)"
getent passwd {MIRROR_USER} >/dev/null 2>&1 && printf 'user yes\\n'
dpkg-query -W -f='pkg ${{Package}} ${{db:Status-Status}}\\n' {" ".join(MIRROR_PACKAGES)} 2>/dev/null
unit_states "unit " {units}
for _d in {MIRROR_REGISTRY_ROOT}/*/docker; do
    [ -d "$_d" ] && _d=${{_d%/docker}} && printf 'registry %s\\n' "${{_d##*/}}"
done
true"""


@dataclass
class MirrorStateData:
    current: str | None = None  # the bundle id `current` points at, when it is a bundle
    current_raw: str = ""  # what the link says (for the refusal message)
    apt_os: list[str] = field(default_factory=list)  # OS repositories the bundle has
    python: str | None = None  # "3.11"
    wheels: str | None = None  # sha256 of the bundle's requirements file for that Python
    pip_wheel: str | None = None  # pip's wheel in the bundle (pip runs from it: no python3-pip)
    venv: str | None = None  # "venv-<16 hex>" the venv link points at
    user: bool = False
    packages: dict[str, str] = field(default_factory=dict)  # name -> dpkg status
    units: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (active, enabled)
    registries: list[str] = field(default_factory=list)  # bundle ids with a registry storage


def parse(output: str) -> MirrorStateData:
    """Parse the section. Untrusted host output: every value is matched, odd lines ignored."""
    data = MirrorStateData()
    bundle_ok = False
    for line in output.splitlines():
        key, _, rest = line.strip().partition(" ")
        words = rest.split()
        if key == "current":
            data.current_raw = rest.strip()
            m = CURRENT_RE.fullmatch(rest.strip())
            data.current = m.group(1) if m else None
        elif key == "bundle" and rest == "ok":
            bundle_ok = True
        elif key == "apt-os" and OS_ID_RE.fullmatch(rest):
            data.apt_os.append(rest)
        elif key == "python" and PYTHON_RE.fullmatch(rest):
            data.python = rest
        elif key == "wheels" and SHA256_RE.fullmatch(rest):
            data.wheels = rest
        elif key == "pip" and PIP_WHEEL_RE.fullmatch(rest):
            data.pip_wheel = rest
        elif key == "venv" and VENV_RE.fullmatch(rest):
            data.venv = rest
        elif key == "user" and rest == "yes":
            data.user = True
        elif key == "pkg" and len(words) == 2 and words[0] in MIRROR_PACKAGES:
            data.packages[words[0]] = words[1]
        elif (
            key == "unit" and len(words) == 3 and all(UNIT_STATE_RE.fullmatch(w) for w in words[1:])
        ):
            data.units[words[0]] = (words[1], words[2])
        elif key == "registry" and SHA256_RE.fullmatch(rest):
            data.registries.append(rest)
    if not bundle_ok:
        data.current = None  # a link to a bundle without its manifest: not imported
    return data
