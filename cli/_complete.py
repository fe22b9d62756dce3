"""Shell completion of inventory host and group names (click's completion: README).

`--limit` completes the names in the inventory named earlier on the command line; a list
(`gpu001,gpu0`) completes its last item. A file that does not load completes nothing:
completion must never print an error or a traceback into the operator's shell.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import click
from click.shell_completion import CompletionItem

MAX_ITEMS = 2000  # a 10,000-host site: offer the groups and the first hosts


def limit_names(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    from gpuprov.errors import GpuprovError
    from gpuprov.inventory.loader import load_inventory

    path = (
        ctx.params.get("inventory")
        or ctx.params.get("inventory_file")
        or _typed_inventory(ctx.command)
    )
    if not path:
        return []
    try:
        cluster = load_inventory(path)
    except (GpuprovError, OSError, ValueError):
        return []
    head, _, last = incomplete.rpartition(",")
    prefix = f"{head}," if head else ""
    groups = [CompletionItem(prefix + g, help=f"group: {len(cluster.groups[g].hosts)} hosts")
              for g in cluster.groups if g.startswith(last)]  # fmt: skip
    groups += [CompletionItem(prefix + a, help=f"alias: {len(m)} hosts")
               for a, m in cluster.aliases.items() if a.startswith(last) and a not in cluster.groups]  # fmt: skip
    hosts = [CompletionItem(prefix + h.name, help=f"{h.role} host in {h.group}")
             for h in cluster.hosts.values() if h.name.startswith(last)]  # fmt: skip
    return (groups + hosts)[:MAX_ITEMS]


def _typed_inventory(command: click.Command) -> Path | None:
    """The inventory file on the command line being completed. click leaves the argument
    out of ctx.params while the option before the cursor lacks its value (`--limit <TAB>`),
    so read the words the shell passed (COMP_WORDS, set by click's bash, zsh and fish
    scripts): the first existing file that is not an option's value."""
    try:
        words = shlex.split(os.environ.get("COMP_WORDS", ""))
    except ValueError:
        return None
    takes_value = {
        name
        for p in command.params
        if isinstance(p, click.Option) and not p.is_flag
        for name in p.opts
    }
    for before, word in zip(words, words[1:], strict=False):
        if word.startswith("-") or before in takes_value:
            continue
        candidate = Path(word).expanduser()
        if candidate.is_file():
            return candidate
    return None
