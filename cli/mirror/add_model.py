"""`gpuprov mirror add-model`: import a model directory or a Hugging Face cache snapshot."""

from __future__ import annotations

from pathlib import Path

import click
from gpuprov.cli._options import OUTPUT, STORE
from gpuprov.cli.app import App


@click.command("add-model")
@click.argument("source", type=click.Path(path_type=Path))
@STORE
@click.option("--repo", required=True, help="Repo id ORG/NAME as clients will ask for it.")
@click.option(
    "--revision",
    help="Branch to point at the import (default main; refs/tags/NAME makes a tag). For a "
    "Hugging Face cache repo dir, the ref or sha to import.",
)
@click.option(
    "--repo-type",
    type=click.Choice(["model", "dataset"]),
    default="model",
    show_default=True,
)
@OUTPUT
@click.pass_obj
def add_model(
    app: App,
    source: Path,
    store: Path,
    repo: str,
    revision: str | None,
    repo_type: str,
    output: str,
) -> None:
    """Import SOURCE into the store, atomically (nothing is visible until it is complete).

    SOURCE is a plain directory (the commit sha is a hash of its manifest) or a Hugging
    Face cache snapshot, models--ORG--NAME/snapshots/SHA or models--ORG--NAME (the
    upstream sha is kept)."""
    from gpuprov.mirror.store import add_model as do_add

    info = do_add(source, store, repo, revision, repo_type=repo_type)
    if output == "json":
        app.json(
            {
                "repo": info.repo,
                "repo_type": info.repo_type,
                "sha": info.sha,
                "refs": list(info.refs),
                "files": len(info.files),
                "size": info.total_size,
                "source": info.source,
            }
        )
        return
    app.success(
        f"{info.repo_type} {info.repo}@{info.sha} ({', '.join(info.refs)}): "
        f"{len(info.files)} files, {info.total_size} bytes"
    )
