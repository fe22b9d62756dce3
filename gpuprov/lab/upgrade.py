"""LAB: the site's next bundle, a driver upgrade carried across the air gap.

The lab is first provisioned with the stand-in catalog's oldest driver release
(gpuprov.lab.inventory.first_driver). The next bundle is what a site does a month later:
the inventory moves the driver to the next release, the connected side builds a
**differential** bundle against the one the mirror serves (`gpuprov bundle build --since
lab/bundle/manifest.json`: only files the first bundle lacks are carried), it crosses on
the same FAT32 stick (Demo.carry) and is imported onto mirror01 (import refuses it on any
other base), and `gpuprov apply` rolls it out: mirror01's services switch to it, then the
GPU hosts upgrade from mirror01 only. `gpuprov bundle rollback` switches the mirror back.
"""

from __future__ import annotations

import json
import re
import shutil
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from gpuprov.lab import airgap
from gpuprov.lab.box import LabError

if TYPE_CHECKING:
    from gpuprov.lab.demo import Demo

# The driver line of a generated lab inventory (gpuprov.lab.inventory.STACK).
DRIVER_LINE = re.compile(r'    driver: \{branch: "\d+", version: "[0-9.]+", modules: auto\}')
MAX_RELEASE_BYTES = 16 * 2**20  # an InRelease fetched from the mirror (verify's bound)


def next_driver(current: str) -> str:
    """The stand-in catalog's release after `current`."""
    from gpuprov.testbed.standins.catalog import driver_releases

    releases = driver_releases()
    if current not in releases:
        raise LabError(f"driver {current!r} is not a stand-in release ({', '.join(releases)})")
    later = releases[releases.index(current) + 1 :]
    if not later:
        raise LabError(f"driver {current} is the newest stand-in release: nothing to upgrade to")
    return later[0]


def inventory_driver(inventory: Path) -> str:
    """The driver version the lab inventory's GPU hosts are on (one for the whole lab)."""
    from gpuprov.inventory.loader import load_inventory

    versions = {h.stack.driver.version for h in load_inventory(inventory).gpu_hosts() if h.stack}
    if len(versions) != 1:
        raise LabError(f"{inventory}: expected one driver version for the lab, got {versions}")
    return versions.pop()


def move_driver(inventory: Path, driver: str) -> str:
    """Move a generated lab inventory to `driver`: its one driver line is rewritten, nothing
    else; validated by the real loader before it replaces the file. Returns the version
    it was on."""
    from gpuprov.lab.inventory import _replace_validated, stack_text

    was = inventory_driver(inventory)
    new_line = next(ln for ln in stack_text("debian12", driver).splitlines() if "driver:" in ln)
    lines = inventory.read_text().splitlines(keepends=True)
    hits = [i for i, ln in enumerate(lines) if DRIVER_LINE.fullmatch(ln.rstrip("\n"))]
    if len(hits) != 1:
        raise LabError(f"{inventory}: expected one generated `driver:` line, found {len(hits)}")
    lines[hits[0]] = new_line + "\n"
    _replace_validated(inventory, "".join(lines))
    return was


def manifest_base(bundle: Path) -> str | None:
    """The `base` of a bundle's manifest.json (None: a full bundle, or no manifest)."""
    try:
        data = json.loads((bundle / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    value = data.get("base") if isinstance(data, dict) else None
    return value if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value) else None


def next_bundle_dir(demo: Demo, driver: str) -> Path:
    from gpuprov.testbed.standins.catalog import branch_of

    return demo.s.dir / f"bundle-{branch_of(driver)}"


def build_next_bundle(demo: Demo, driver: str) -> tuple[str, Path]:
    """`gpuprov bundle build --since` the lab's first bundle, for the lab moved to `driver`:
    a differential bundle in lab/bundle-<branch>. Reused when its inputs and base are
    unchanged. Returns (bundle id, directory)."""
    from gpuprov.lab.demo import build_standin_repo
    from gpuprov.lab.inventory import write_bundle_inventory
    from gpuprov.testbed.rootfs import cache_dir

    lab = demo.s.dir
    base = airgap.bundle_id(demo.bundle)
    if base is None:
        raise LabError(f"{demo.bundle}: no first bundle to build the next one against")
    home = airgap.bundle_key(lab)
    airgap.host_dpkg_status(lab)
    airgap.lab_model(lab)
    airgap.lab_image(lab)
    repo = build_standin_repo(lab)  # one repository holds every stand-in driver release
    inventory = write_bundle_inventory(demo.s, driver=driver, path=lab / "bundle-next.yaml")
    to = next_bundle_dir(demo, driver)
    stamp = to.with_name(to.name + ".inputs")
    inputs = f"{airgap.build_inputs(inventory, repo, lab)} base {base}\n"
    have = airgap.bundle_id(to)
    if have and manifest_base(to) == base and stamp.is_file() and stamp.read_text() == inputs:
        demo.out(f"    reused bundle {have[:12]} ({to}: same inputs, base {base[:12]})")
        return have, to
    shutil.rmtree(to, ignore_errors=True)
    stamp.unlink(missing_ok=True)
    with airgap.upstreams(demo.s, repo):
        demo.gpuprov("bundle", "build", str(inventory), "--to", str(to),
                     "--key-home", str(home), "--cache", str(cache_dir() / "bundle"),
                     "--since", str(demo.bundle / "manifest.json"))  # fmt: skip
    built = airgap.bundle_id(to)
    if built is None or manifest_base(to) != base:
        raise LabError(f"{to}: the build wrote no differential manifest on base {base[:12]}")
    stamp.write_text(inputs)
    demo.out(f"    bundle {built[:12]} on base {base[:12]}: "
             f"{airgap.tree_size(to) / 2**20:.1f} MiB carried")  # fmt: skip
    return built, to


def served_release(demo: Demo, os_id: str = "debian12") -> bytes:
    """The InRelease mirror01's nginx serves now, fetched from the control node (which
    reaches mirror01 on the lab network, as `gpuprov verify` does)."""
    from gpuprov.inventory.loader import load_inventory
    from gpuprov.lab.inventory import APT_PORT, BUNDLE_SUITE

    mirror = load_inventory(demo.inventory).mirror_host()
    if mirror is None:
        raise LabError(f"{demo.inventory}: no mirror host")
    url = f"http://{mirror.address}:{APT_PORT}/{os_id}/dists/{BUNDLE_SUITE}/InRelease"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=30) as r:
            body = r.read(MAX_RELEASE_BYTES + 1)
    except OSError as exc:
        raise LabError(f"{url}: {exc}") from exc
    if len(body) > MAX_RELEASE_BYTES:
        raise LabError(f"{url}: more than {MAX_RELEASE_BYTES} bytes")
    return body
