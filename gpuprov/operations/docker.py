"""docker's /etc/docker/daemon.json: add our settings, keep every one of the user's."""

from __future__ import annotations

import json
import re

from pyinfra import host
from pyinfra.api import operation

from gpuprov.operations.files import write_file_command
from gpuprov.paths import DOCKER_MIRROR_RECORD

DAEMON_JSON = "/etc/docker/daemon.json"


class DaemonJsonError(ValueError):
    """daemon.json is not a JSON object; docker itself refuses to start with it."""


def _daemon_doc(current: str | None) -> dict:
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
    return doc


def missing_entries(current: str | None, lists: dict[str, list[str]]) -> dict[str, list[str]]:
    """The entries of `lists` that daemon.json lacks: what a merge adds (and records)."""
    doc = _daemon_doc(current)
    missing = {}
    for key, wanted in lists.items():
        have = doc.get(key, [])
        if not isinstance(have, list):
            raise DaemonJsonError(f"{DAEMON_JSON}: {key!r} must be a list")
        if lacking := [w for w in wanted if w not in have]:
            missing[key] = lacking
    return missing


def merge_daemon_json(
    current: str | None,
    lists: dict[str, list[str]],
    objects: dict[str, dict[str, object]] | None = None,
    remove: dict[str, list[str]] | None = None,
) -> str | None:
    """`current` with each value of `lists` added to its list key, each entry of `remove`
    taken out of its list key (a key left empty goes), and each key of `objects` set
    inside its object key ({"features": {"cdi": True}}); other keys, and entries the user
    already has, stay as they are. None when nothing would change."""
    doc = _daemon_doc(current)
    changed = False
    for key, gone in (remove or {}).items():
        have = doc.get(key, [])
        if not isinstance(have, list):
            raise DaemonJsonError(f"{DAEMON_JSON}: {key!r} must be a list")
        kept = [e for e in have if e not in gone]
        if len(kept) != len(have):
            changed = True
            if kept:
                doc[key] = kept
            else:
                del doc[key]
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


RECORD_KEYS = ("registry-mirrors", "insecure-registries")
ENTRY_RE = re.compile(r"(https?://)?[A-Za-z0-9.\-\[\]:]{1,255}")  # host:port, or a URL of one


def parse_mirror_record(text: str | None) -> dict[str, list[str]]:
    """The entries gpuprov added to daemon.json (DOCKER_MIRROR_RECORD, read from the host):
    {"registry-mirrors": [...], "insecure-registries": [...]}. None/absent: nothing."""
    if text is None:
        return {}
    where = f"{DOCKER_MIRROR_RECORD} (what gpuprov added to {DAEMON_JSON})"
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DaemonJsonError(f"{where} line {exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(doc, dict) or set(doc) - set(RECORD_KEYS):
        raise DaemonJsonError(f"{where}: expected an object with keys {', '.join(RECORD_KEYS)}")
    for key, entries in doc.items():
        if not isinstance(entries, list) or not all(
            isinstance(e, str) and ENTRY_RE.fullmatch(e) for e in entries
        ):
            raise DaemonJsonError(f"{where}: {key!r} must be a list of registry addresses")
    return doc


def mirror_record_text(record: dict[str, list[str]]) -> str:
    return json.dumps({k: record[k] for k in RECORD_KEYS if record.get(k)}, indent=4) + "\n"


@operation()
def docker_daemon_lists(
    lists: dict[str, list[str]],
    current: str | None,
    objects: dict[str, dict[str, object]] | None = None,
    remove: dict[str, list[str]] | None = None,
    record: dict[str, list[str]] | None = None,
):
    """
    Add entries to list settings in /etc/docker/daemon.json (e.g. registry-mirrors), take
    out entries gpuprov added before (`remove`), set keys of object settings
    (features.cdi), written atomically; the user's other settings and entries stay.

    + lists: setting -> entries that must be in it
    + current: the file's text as this apply leaves it so far (None when absent)
    + objects: setting -> keys and values it must have
    + remove: setting -> entries to take out (the record's, no longer wanted)
    + record: written to DOCKER_MIRROR_RECORD in the same shell command, after daemon.json
    """
    merged = merge_daemon_json(current, lists, objects, remove)
    if merged is None:
        host.noop(f"{DAEMON_JSON} has {', '.join([*lists, *(objects or {})])} already")
        return
    command = write_file_command(DAEMON_JSON, merged)
    if record is not None:
        command += " && " + write_file_command(DOCKER_MIRROR_RECORD, mirror_record_text(record))
    yield command
