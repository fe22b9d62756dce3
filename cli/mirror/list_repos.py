"""`gpuprov mirror list`: repos in a store, at their main branch."""

from __future__ import annotations

from pathlib import Path

import click
from gpuprov.cli._options import OUTPUT, STORE
from gpuprov.cli.app import App


@click.command("list")
@STORE
@OUTPUT
@click.pass_obj
def list_repos(app: App, store: Path, output: str) -> None:
    """List the repos in STORE with their commit, refs, file count and size."""
    from gpuprov.errors import InputError, Location, Problem
    from gpuprov.mirror.store import list_repos as do_list

    if not (store / "repos").is_dir():
        raise InputError([Problem(Location(str(store)), "not a mirror store (no repos/)")])
    repos = do_list(store)
    if output == "json":
        app.json(
            [
                {
                    "repo": r.repo,
                    "repo_type": r.repo_type,
                    "sha": r.sha,
                    "refs": list(r.refs),
                    "files": len(r.files),
                    "size": r.total_size,
                    "imported": r.created_at,
                    "source": r.source,
                }
                for r in repos
            ]
        )
        return
    app.table(
        ["REPO", "TYPE", "SHA", "REFS", "FILES", "SIZE"],
        [
            (r.repo, r.repo_type, r.sha[:12], ",".join(r.refs), len(r.files), r.total_size)
            for r in repos
        ],
    )
