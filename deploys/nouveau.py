"""nouveau off: blacklist it, keep it out of the initramfs, reboot only if it is loaded.

Runbook:
1. /etc/modprobe.d/blacklist-nouveau.conf: `blacklist nouveau`, `options nouveau modeset=0`.
2. Rebuild the initramfs when that file changed (NVIDIA's own role skips this, and nouveau
   then comes back at early boot).
3. nouveau loaded now: a reboot is due (done once, after the driver is installed).
"""

from __future__ import annotations

from gpuprov.deploys.context import NodeContext
from pyinfra.api import deploy

from gpuprov.operations.files import managed_file, sha256
from gpuprov.operations.system import initramfs_rebuild
from gpuprov.paths import NOUVEAU_CONF
from gpuprov.rendering import render


@deploy("Disable nouveau")
def nouveau(ctx: NodeContext) -> None:
    content = render("blacklist-nouveau.conf.j2")
    changed = ctx.digests.get(NOUVEAU_CONF) != sha256(content)
    managed_file(
        name="Blacklist nouveau (modprobe.d)",
        path=NOUVEAU_CONF,
        content=content,
        digests=ctx.digests,
    )
    initramfs_rebuild(
        name="Rebuild the initramfs without nouveau",
        tool="update-initramfs" if ctx.apt else "dracut",
        needed=changed,
    )
    if ctx.state.nouveau_loaded:
        ctx.reboot_reasons.append("nouveau is loaded")
