"""Drain/undrain and command-gate templates: what may be written, and how they render.

A template is a shell command with the placeholders `{host}` and `{address}`, written
bare (`kubectl drain {host}`): gpuprov shell-quotes the value it substitutes. A quoted
value is only safe where the shell reads it as an unquoted word, so these are refused:
- conversions, format specs, attributes and indexes (`{address!r}`, `{host:>20}`,
  `{host.upper}`): `!r` writes Python's repr, which the shell does not read as quoting;
- a placeholder inside quotes (`"{address}"`, `'{host}'`): there gpuprov's single
  quotes are literal characters and a `$(...)` in the value would run.
"""

from __future__ import annotations

import re
import shlex
import string

FIELDS = ("host", "address")
# A value that needs every kind of quoting: if it survives shlex.split intact, the
# placeholder sat where the shell reads gpuprov's quoting as quoting.
_PROBE = "p'q \"r$(s)`t`"
# Characters that need a shell; a template without them runs as a plain argv.
SHELL_SYNTAX = frozenset("|&;<>()$`\\*?[]#~\n!{}")
# First words only a shell understands (reserved words, builtins without a program).
SHELL_WORDS = frozenset((
    "if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done", "case", "esac",
    "in", "function", "select", "time", "!", "{", "}", "[[", "]]", ".", ":", "exec", "export",
    "cd", "set", "unset", "eval", "source", "alias", "trap", "ulimit", "umask", "readonly",
    "shift", "return", "exit", "break", "continue", "times", "wait", "read", "command", "type",
    "hash", "getopts", "local",
))  # fmt: skip
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=.*", re.S)


def template_problem(template: str) -> str | None:
    """None when `template` is acceptable, else what is wrong and what to write instead."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"bad template ({exc}); write a literal brace as {{{{ or }}}}"
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in FIELDS:
            return f"unknown placeholder {{{name}}}; only {{host}} and {{address}} are substituted"
        if spec or conversion:
            extra = (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            return (
                f"placeholder {{{name}{extra}}}: write it bare as {{{name}}} "
                "(gpuprov shell-quotes the value)"
            )
    try:
        words = shlex.split(render_with(template, _PROBE, _PROBE), comments=False, posix=True)
    except ValueError:
        return "unbalanced quotes in the command"
    if "<<" in template:
        # In a here-document the shell expands $(...) but removes no quotes.
        return "here-documents (<<) are not allowed; pass the host as an argument"
    uses = sum(1 for _, name, _, _ in parsed if name)
    if sum(word.count(_PROBE) for word in words) != uses:
        return (
            "a placeholder is inside quotes; write {host} and {address} bare, outside any "
            "quotes (gpuprov shell-quotes the value)"
        )
    return None


def render_with(template: str, host: str, address: str) -> str:
    """The command with `host` and `address` shell-quoted into it."""
    return template.format(host=shlex.quote(host), address=shlex.quote(address))


def argv_if_plain(command: str) -> list[str] | None:
    """The argv of a rendered command that needs no shell (no pipes, substitutions,
    globs, redirections or assignments); None when it does."""
    try:
        words = shlex.split(command, posix=True)
    except ValueError:
        return None
    if not words or words[0] in SHELL_WORDS or _ASSIGNMENT.fullmatch(words[0]):
        return None
    quoted_free = "".join(_unquoted_parts(command))
    if any(c in SHELL_SYNTAX for c in quoted_free):
        return None
    return words


def _unquoted_parts(command: str) -> list[str]:
    """The characters of `command` outside quotes (quoted text cannot be shell syntax)."""
    out: list[str] = []
    quote: str | None = None
    for c in command:
        if quote:
            if c == quote:
                quote = None
            elif quote == '"' and c in "$`\\":
                out.append(c)  # still expanded inside double quotes
        elif c in "'\"":
            quote = c
        else:
            out.append(c)
    return out
