"""Token files: both spellings of a grant, hashed tokens, located errors."""

from __future__ import annotations

import hashlib

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
    with pytest.raises(InputError) as err:
        TokenPolicy.load(path)
    assert f"{path}{where}" in str(err.value) and message in str(err.value)
