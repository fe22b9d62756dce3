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
