"""docker's /etc/docker/daemon.json: add our settings, keep every one of the user's."""

from __future__ import annotations

import json

from pyinfra import host
from pyinfra.api import operation

from gpuprov.operations.files import write_file_command

DAEMON_JSON = "/etc/docker/daemon.json"


class DaemonJsonError(ValueError):
    """daemon.json is not a JSON object; docker itself refuses to start with it."""


def merge_daemon_json(
    current: str | None,
    lists: dict[str, list[str]],
    objects: dict[str, dict[str, object]] | None = None,
) -> str | None:
    """`current` with each value of `lists` added to its list key, and each key of
    `objects` set inside its object key ({"features": {"cdi": True}}); other keys, and
    entries the user already has, stay as they are. None when nothing would change."""
    doc: dict = {}
    if current is not None and current.strip():
        try:
            doc = json.loads(current)
        except json.JSONDecodeError as exc:
            raise DaemonJsonError(
                f"{DAEMON_JSON} line {exc.lineno}: not valid JSON ({exc.msg})"
            ) from None
        if not isinstance(doc, dict):
            raise DaemonJsonError(f"{DAEMON_JSON}: expected a JSON object")
    changed = False
    for key, wanted in lists.items():
        have = doc.get(key, [])
        if not isinstance(have, list):
            raise DaemonJsonError(f"{DAEMON_JSON}: {key!r} must be a list")
        missing = [w for w in wanted if w not in have]
        if missing:
            doc[key] = have + missing
            changed = True
    for key, wanted_keys in (objects or {}).items():
        section = doc.get(key, {})
        if not isinstance(section, dict):
            raise DaemonJsonError(f"{DAEMON_JSON}: {key!r} must be an object")
        for name, value in wanted_keys.items():
            if section.get(name) != value:
                section[name] = value
                changed = True
        doc[key] = section
    return json.dumps(doc, indent=4) + "\n" if changed else None


@operation()
def docker_daemon_lists(
    lists: dict[str, list[str]],
    current: str | None,
    objects: dict[str, dict[str, object]] | None = None,
):
    """
    Add entries to list settings in /etc/docker/daemon.json (e.g. registry-mirrors) and
    keys to object settings (features.cdi), written atomically; the user's other settings
    and entries stay.

    + lists: setting -> entries that must be in it
    + current: the file's text as this apply leaves it so far (None when absent)
    + objects: setting -> keys and values it must have
    """
    merged = merge_daemon_json(current, lists, objects)
    if merged is None:
        host.noop(f"{DAEMON_JSON} has {', '.join([*lists, *(objects or {})])} already")
        return
    yield write_file_command(DAEMON_JSON, merged)
