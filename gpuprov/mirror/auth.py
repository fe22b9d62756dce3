"""Optional bearer tokens for the mirror, read from a YAML or JSON token file.

    tokens:
      hf_team_a_secret: ["acme/*", "datasets/acme/*"]       # token -> repo globs
      "sha256:9f86d0…": {name: ci, repos: ["*"]}           # hashed, so the file holds no secret
    gated: ["acme/llama-*", "datasets/acme/private-*"]      # these need a matching token

The file holds secrets (or, hashed, what lets a guesser check guesses offline), and whoever
can write it can grant themselves any repo: it must be a regular file of at most 1 MiB,
owned by the user the server runs as (or root), with no group or other permissions
(`chmod 600`). Anything else is refused at start.

Repo globs match `ORG/NAME` for models and `datasets/ORG/NAME` / `spaces/ORG/NAME` for the
other types (fnmatch: `*` also matches `/`). Repos that are not gated are readable by
anyone; a token that is sent must be valid, whatever the repo.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from gpuprov.errors import InputError, Location, Problem


@dataclass(frozen=True)
class Grant:
    name: str
    globs: tuple[str, ...]

    def allows(self, repo_key: str) -> bool:
        return any(fnmatch.fnmatchcase(repo_key, g) for g in self.globs)


class AuthDenied(Exception):
    def __init__(self, code: str, status: int, message: str):
        super().__init__(message)
        self.code, self.status = code, status


def repo_key(repo_type: str, repo: str) -> str:
    return repo if repo_type == "model" else f"{repo_type}s/{repo}"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


MAX_TOKEN_FILE = 1024 * 1024


def _read_private(path: Path) -> str:
    """The token file's text, if only its owner (the server's user, or root) may read or
    write it. Checked on the open file, so a swap after the check reads nothing else."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        where = Location(str(path))
        if not stat.S_ISREG(st.st_mode):
            raise InputError([Problem(where, "the token file must be a regular file")])
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o066:
            raise InputError(
                [
                    Problem(
                        where,
                        f"mode {mode:04o} lets other users read or change the tokens: "
                        f"chmod 600 {path} (owned by the user the server runs as)",
                    )
                ]
            )
        if st.st_uid not in (os.geteuid(), 0):
            raise InputError(
                [
                    Problem(
                        where,
                        f"owned by uid {st.st_uid}, who could grant any repo: "
                        f"chown it to the user the server runs as (uid {os.geteuid()}) or root",
                    )
                ]
            )
        data = fh.read(MAX_TOKEN_FILE + 1)
    if len(data) > MAX_TOKEN_FILE:
        raise InputError([Problem(where, f"larger than {MAX_TOKEN_FILE} bytes")])
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise InputError([Problem(where, "not UTF-8 text")]) from None


class TokenPolicy:
    """Who may read what. With no token file every repo is public."""

    def __init__(self, grants: dict[str, Grant] | None = None, gated: tuple[str, ...] = ()):
        self._grants = grants or {}  # sha256(token) -> Grant
        self.gated = gated

    @classmethod
    def load(cls, path: Path) -> TokenPolicy:
        from ruamel.yaml import YAML
        from ruamel.yaml.error import YAMLError

        path = Path(path)
        try:
            text = _read_private(path)
            data = YAML(typ="rt").load(text)
        except OSError as exc:
            raise InputError(
                [Problem(Location(str(path)), f"cannot read: {exc.strerror}")]
            ) from exc
        except YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            loc = (
                Location(str(path), mark.line + 1, mark.column + 1) if mark else Location(str(path))
            )
            raise InputError(
                [Problem(loc, f"not valid YAML/JSON: {getattr(exc, 'problem', exc)}")]
            ) from exc

        def at(node, key=None) -> Location:
            try:
                line, col = node.lc.key(key) if key is not None else (node.lc.line, node.lc.col)
                return Location(str(path), line + 1, col + 1)
            except Exception:
                return Location(str(path))

        problems: list[Problem] = []
        if not isinstance(data, dict):
            raise InputError(
                [Problem(Location(str(path), 1, 1), "expected a mapping with 'tokens' and 'gated'")]
            )
        for key in data:
            if key not in ("tokens", "gated"):
                problems.append(
                    Problem(at(data, key), f"unknown key {key!r} (expected tokens, gated)")
                )
        grants: dict[str, Grant] = {}
        tokens = data.get("tokens") or {}
        if not isinstance(tokens, dict):
            problems.append(
                Problem(at(data, "tokens"), "'tokens' must map token -> list of repo globs")
            )
            tokens = {}
        for i, (token, value) in enumerate(tokens.items()):
            name, globs = f"token-{i + 1}", value
            if isinstance(value, dict):
                name, globs = str(value.get("name", name)), value.get("repos")
            if not isinstance(token, str) or len(token) < 8:
                problems.append(
                    Problem(at(tokens, token), "a token must be a string of 8+ characters")
                )
                continue
            if not isinstance(globs, list) or not all(isinstance(g, str) and g for g in globs):
                problems.append(Problem(at(tokens, token), "expected a list of repo globs"))
                continue
            digest = token[7:].lower() if token.startswith("sha256:") else _hash(token)
            if len(digest) != 64:
                problems.append(Problem(at(tokens, token), "sha256: needs 64 hex digits"))
                continue
            grants[digest] = Grant(name, tuple(globs))
        gated = data.get("gated") or []
        if not isinstance(gated, list) or not all(isinstance(g, str) and g for g in gated):
            problems.append(Problem(at(data, "gated"), "'gated' must be a list of repo globs"))
            gated = []
        if problems:
            raise InputError(problems)
        return cls(grants, tuple(gated))

    def is_gated(self, key: str) -> bool:
        return any(fnmatch.fnmatchcase(key, g) for g in self.gated)

    def identify(self, authorization: str | None) -> Grant | None:
        """The grant of the bearer token, None when none was sent; raises on a bad one."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthDenied("Unauthorized", 401, "Invalid credentials in Authorization header")
        grant = self._grants.get(_hash(token))
        if grant is None:
            raise AuthDenied("Unauthorized", 401, "Invalid credentials in Authorization header")
        return grant

    def check(self, grant: Grant | None, repo_type: str, repo: str) -> None:
        key = repo_key(repo_type, repo)
        if not self.is_gated(key):
            return
        if grant is None:
            raise AuthDenied("GatedRepo", 401, f"Access to {key} is restricted: send a token")
        if not grant.allows(key):
            raise AuthDenied("GatedRepo", 403, f"Token {grant.name!r} may not read {key}")
