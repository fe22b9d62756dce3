"""Token files: both spellings of a grant, hashed tokens, located errors."""

from __future__ import annotations

import hashlib
import os

import pytest

from gpuprov.errors import InputError
from gpuprov.mirror.auth import AuthDenied, TokenPolicy


def test_plain_and_hashed_tokens_and_gating(tmp_path):
    hashed = hashlib.sha256(b"ci-secret-token").hexdigest()
    path = tmp_path / "t.yaml"
    path.write_text(
        "tokens:\n"
        "  team-a-secret-1: [acme/*, datasets/acme/*]\n"
        f"  'sha256:{hashed}': {{name: ci, repos: ['*']}}\n"
        "gated: [acme/llama-*, datasets/acme/*]\n"
    )
    path.chmod(0o600)
    policy = TokenPolicy.load(path)
    team = policy.identify("Bearer team-a-secret-1")
    ci = policy.identify("bearer ci-secret-token")
    assert ci.name == "ci" and team.name == "token-1"
    assert policy.identify(None) is None
    policy.check(None, "model", "acme/tiny")  # not gated: public
    policy.check(team, "model", "acme/llama-7b")
    policy.check(team, "dataset", "acme/x")
    with pytest.raises(AuthDenied) as err:
        policy.check(None, "model", "acme/llama-7b")
    assert (err.value.code, err.value.status) == ("GatedRepo", 401)
    for bad in ("Bearer nope-nope-nope", "Basic dGVzdA==", "Bearer "):
        with pytest.raises(AuthDenied) as err:
            policy.identify(bad)
        assert (err.value.code, err.value.status) == ("Unauthorized", 401)


def test_token_not_covering_a_gated_repo_is_403(tmp_path):
    path = tmp_path / "t.json"
    path.write_text('{"tokens": {"only-other-org": ["other/*"]}, "gated": ["*"]}')
    path.chmod(0o600)
    policy = TokenPolicy.load(path)
    with pytest.raises(AuthDenied) as err:
        policy.check(policy.identify("Bearer only-other-org"), "model", "acme/m")
    assert (err.value.code, err.value.status) == ("GatedRepo", 403)
    policy.check(policy.identify("Bearer only-other-org"), "model", "other/m")


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("tokens: [a, b]\n", ":1:1", "'tokens' must map"),
        ("tokens:\n  short: [acme/*]\n", ":2:3", "8+ characters"),
        ("tokens:\n  long-enough-token: acme/*\n", ":2:3", "list of repo globs"),
        ("tokens:\n  'sha256:abc': [x]\n", ":2:3", "64 hex"),
        ("gated: acme/*\n", ":1:1", "'gated' must be a list"),
        ("tokns: {}\n", ":1:1", "unknown key"),
        ("tokens: {a: [\n", ":", "not valid YAML"),
    ],
)
def test_bad_token_files_give_located_errors(tmp_path, text, where, message):
    path = tmp_path / "t.yaml"
    path.write_text(text)
    path.chmod(0o600)
    with pytest.raises(InputError) as err:
        TokenPolicy.load(path)
    assert f"{path}{where}" in str(err.value) and message in str(err.value)


# ---- issue #13 item 21: the token file is private ------------------------------------------
TOKENS = "tokens:\n  long-enough-token: [acme/*]\ngated: [acme/*]\n"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o620, 0o602, 0o666], ids=oct)
def test_token_file_readable_or_writable_by_others_is_refused(tmp_path, mode):
    path = tmp_path / "tokens.yaml"
    path.write_text(TOKENS)
    path.chmod(mode)
    with pytest.raises(InputError) as err:
        TokenPolicy.load(path)
    assert f"mode {mode:04o}" in str(err.value) and f"chmod 600 {path}" in str(err.value)


@pytest.mark.parametrize("mode", [0o600, 0o400], ids=oct)
def test_private_token_file_is_accepted(tmp_path, mode):
    path = tmp_path / "tokens.yaml"
    path.write_text(TOKENS)
    path.chmod(mode)
    assert TokenPolicy.load(path).identify("Bearer long-enough-token").globs == ("acme/*",)


def test_token_file_through_a_symlink_is_judged_by_its_target(tmp_path):
    path = tmp_path / "tokens.yaml"
    path.write_text(TOKENS)
    path.chmod(0o644)
    link = tmp_path / "link.yaml"
    link.symlink_to(path)
    with pytest.raises(InputError, match="mode 0644"):
        TokenPolicy.load(link)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_token_file_owned_by_another_user_is_refused(tmp_path):
    path = tmp_path / "tokens.yaml"
    path.write_text(TOKENS)
    path.chmod(0o600)
    os.chown(path, 65534, 65534)  # nobody: could rewrite the grants
    with pytest.raises(InputError, match="owned by uid 65534"):
        TokenPolicy.load(path)


@pytest.mark.timeout(30)  # before the fix, reading the FIFO blocked forever
def test_token_fifo_is_refused_without_hanging(tmp_path):
    path = tmp_path / "tokens.yaml"
    os.mkfifo(path, 0o600)
    with pytest.raises(InputError, match="regular file"):
        TokenPolicy.load(path)
