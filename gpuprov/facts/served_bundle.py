"""The bundle a mirror host serves: its manifest.json and oci/index.json, read in one
command (bounded, base64 so any byte survives), and the id of the bundle its services were
last started on (deploys/mirror_server.py writes it), for `gpuprov verify` of the mirror."""

from __future__ import annotations

import base64
import binascii
import shlex

from pyinfra.api import FactBase

from gpuprov.paths import MIRROR_SERVING

CURRENT = "/srv/gpuprov/current"  # gpuprov.bundle.catalog.CURRENT
FILES = {"manifest": "manifest.json", "index": "oci/index.json"}
LIMITS = {"manifest": 64 * 1024 * 1024, "index": 8 * 1024 * 1024}


class ServedBundle(FactBase[dict]):
    """{"manifest": bytes | None, "index": bytes | None, "too_large": [names], "serving":
    bundle id | None}: None for a file that is absent or not a regular file (a symlink
    inside the bundle is refused)."""

    default = dict

    def command(self) -> str:
        parts = []
        for name, rel in FILES.items():
            path = shlex.quote(f"{CURRENT}/{rel}")
            parts.append(
                f"if [ -f {path} ] && [ ! -L {path} ]; then printf '{name} '; "
                f"head -c {LIMITS[name] + 1} {path} | base64 -w0; echo; fi"
            )
        parts.append(
            f"if [ -f {MIRROR_SERVING} ]; then printf 'serving %s\\n' "
            f'"$(head -c 100 {MIRROR_SERVING} | tr -dc 0-9a-f)"; fi'
        )
        # A last line always: pyinfra answers `default()` for empty output, not process().
        return "; ".join(parts) + "; echo end"

    def process(self, output: list[str]) -> dict:
        out: dict = {"manifest": None, "index": None, "too_large": [], "serving": None}
        for line in output:
            name, _, data = line.strip().partition(" ")
            if name == "serving":
                out["serving"] = data or None
                continue
            if name not in FILES:
                continue
            try:
                raw = base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                continue
            if len(raw) > LIMITS[name]:
                out["too_large"].append(FILES[name])
            else:
                out[name] = raw
        return out
