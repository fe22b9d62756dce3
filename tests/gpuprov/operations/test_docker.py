import json

import pytest

from gpuprov.operations.docker import DaemonJsonError, merge_daemon_json

MIRROR = {"registry-mirrors": ["http://mirror:5000"]}


def test_absent_or_empty_file_gets_only_our_settings() -> None:
    for current in (None, "", "  \n"):
        assert json.loads(merge_daemon_json(current, MIRROR)) == MIRROR


def test_existing_entries_and_keys_stay_in_order() -> None:
    current = '{"registry-mirrors": ["https://a"], "data-root": "/data/docker"}'
    merged = json.loads(merge_daemon_json(current, MIRROR))
    assert merged == {
        "registry-mirrors": ["https://a", "http://mirror:5000"],
        "data-root": "/data/docker",
    }


def test_nothing_to_add_is_no_change() -> None:
    assert merge_daemon_json('{"registry-mirrors": ["http://mirror:5000"]}', MIRROR) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": 1,,}', "line 1: not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"registry-mirrors": "http://x"}', "'registry-mirrors' must be a list"),
    ],
)
def test_unusable_file_is_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(DaemonJsonError, match=message):
        merge_daemon_json(text, MIRROR)


def test_removed_entries_go_and_a_key_left_empty_goes_too() -> None:
    current = json.dumps({
        "registry-mirrors": ["https://a", "http://old:5000"],
        "insecure-registries": ["old:5000"],
        "data-root": "/data/docker",
    })  # fmt: skip
    remove = {"registry-mirrors": ["http://old:5000"], "insecure-registries": ["old:5000"]}
    merged = json.loads(merge_daemon_json(current, MIRROR, remove=remove))
    assert merged == {
        "registry-mirrors": ["https://a", "http://mirror:5000"],
        "data-root": "/data/docker",
    }
    # Already gone: no change.
    assert merge_daemon_json(json.dumps(merged), MIRROR, remove=remove) is None


def test_mirror_record_is_validated() -> None:
    from gpuprov.operations.docker import mirror_record_text, parse_mirror_record

    assert parse_mirror_record(None) == {}
    record = {
        "registry-mirrors": ["http://10.0.0.5:5000"],
        "insecure-registries": ["10.0.0.5:5000"],
    }
    assert parse_mirror_record(mirror_record_text(record)) == record
    with pytest.raises(DaemonJsonError, match="must be a list of registry addresses"):
        parse_mirror_record('{"insecure-registries": ["$(reboot)"]}')
