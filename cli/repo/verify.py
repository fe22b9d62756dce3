"""`gpuprov repo verify`: check a repository's signatures and every hash."""

from __future__ import annotations

from pathlib import Path

import click
from gpuprov.cli._options import OUTPUT
from gpuprov.cli.app import App


@click.command()
@click.argument("repo_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--keyring",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Binary public keyring the repository must be signed with.",
)
@OUTPUT
@click.pass_obj
def verify(app: App, repo_dir: Path, keyring: Path, output: str) -> None:
    """Check REPO_DIR the way apt would: signatures, index and package hashes, stray files."""
    from gpuprov.aptrepo import verify_repo
    from gpuprov.errors import ExitCode

    problems = verify_repo(repo_dir, keyring)
    errors = sum(p.severity == "error" for p in problems)
    if output == "json":
        app.json(
            {
                "repo": str(repo_dir),
                "ok": not errors,
                "problems": [
                    {"location": str(p.location), "severity": p.severity, "message": p.message}
                    for p in problems
                ],
            }
        )
        if errors:
            app.abort(None, ExitCode.HOSTS_FAILED)
        return
    for problem in problems:
        (app.error if problem.severity == "error" else app.warning)(str(problem))
    if errors:
        app.abort(f"{repo_dir}: {errors} error(s)", ExitCode.HOSTS_FAILED)
    app.success(f"{repo_dir}: signatures and hashes ok")
