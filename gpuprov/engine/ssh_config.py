"""The ssh_config gpuprov connects with: the operator's own `~/.ssh/config` (ProxyJump,
User, IdentityFile...) behind one block that pins host-key checking for every host,
ProxyJump hops included, to the cluster's known_hosts, strictly.

Without it, a hop named by `ProxyJump` in `~/.ssh/config` was checked against
`~/.ssh/known_hosts` with whatever `StrictHostKeyChecking` the operator's config had
(pyinfra connects each hop with the config's settings, not the target's; OpenSSH's jump
child gets none of the `-o` options either): a jump host accepted on first use, or not
checked at all. ssh_config is first-match-wins, in OpenSSH and in paramiko, so a block
at the top wins over anything the operator's config says for the same keys; pyinfra
still overrides StrictHostKeyChecking for the target itself (`--accept-new`), never for
a hop.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

from gpuprov.errors import InputError
from gpuprov.safe_values import SSH_PATH_RE

_made: dict[tuple[str, str], Path] = {}
_dir: Path | None = None


def strict_block(known_hosts: Path) -> str:
    kh = str(known_hosts)
    if not SSH_PATH_RE.fullmatch(kh):
        raise InputError(
            f"ssh.known_hosts {kh!r}: the path must not contain spaces, quotes, '#', '%' or "
            "'\\' (it goes into an ssh_config line); move the file or set another path"
        )
    return (
        "# gpuprov: every host and every ProxyJump hop is checked against the cluster's\n"
        "# known_hosts, strictly (first match wins: nothing below overrides these).\n"
        "Host *\n"
        "    StrictHostKeyChecking yes\n"
        f"    UserKnownHostsFile {kh}\n"
        "    GlobalKnownHostsFile /dev/null\n"
        "    UpdateHostKeys no\n"
        "\n"
    )


def user_config_path() -> Path:
    # pyinfra reads os.path.expanduser("~/.ssh/config"); so does this.
    return Path(os.path.expanduser("~/.ssh/config"))


def cluster_ssh_config(known_hosts: Path) -> Path:
    """A private file (0600 in a 0700 folder, removed at exit): the strict block, then the
    operator's `~/.ssh/config` as it is. One per known_hosts and user config per process."""
    user = user_config_path()
    try:
        user_text = user.read_text(encoding="utf-8") if user.is_file() else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {user}: {exc}") from None
    text = strict_block(known_hosts) + user_text
    key = (str(known_hosts), text)
    if key not in _made:
        path = _private_dir() / f"ssh_config.{len(_made)}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        _made[key] = path
    return _made[key]


def _private_dir() -> Path:
    global _dir
    if _dir is None:
        _dir = Path(tempfile.mkdtemp(prefix="gpuprov-ssh-"))
        atexit.register(shutil.rmtree, _dir, True)
    return _dir
