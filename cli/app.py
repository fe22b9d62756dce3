"""The application object on ctx.obj: one place for terminal output and for aborting.

Commands print through `App` (info/success/warning/error/table/json) and end with
`app.abort(message, code)`. Only `run()` catches the unexpected.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any, Literal, NoReturn

import click
from rich.console import Console
from rich.table import Table

from gpuprov.errors import ConnectError, ExitCode, GpuprovError, InputError
from gpuprov.terminal import cell


class Abort(click.exceptions.Exit):
    """Raised by App.abort; carries the exit code through click."""


class App:
    def __init__(self, debug: bool = False):
        self.debug = debug
        # NO_COLOR (no-color.org): no styling at all, so a terminal log is as plain as a
        # piped one; rich already writes no escapes when the output is not a terminal.
        colours: Literal["auto"] | None = None if os.environ.get("NO_COLOR") else "auto"
        self.out = Console(highlight=False, soft_wrap=True, color_system=colours)
        self.err = Console(stderr=True, highlight=False, soft_wrap=True, color_system=colours)

    # ---- messages -------------------------------------------------------------------
    def info(self, text: str) -> None:
        self.out.print(cell(text))

    def success(self, text: str) -> None:
        self.out.print(cell(text, "green"))

    def warning(self, text: str) -> None:
        self.err.print(cell(text, "yellow"))

    def error(self, text: str) -> None:
        self.err.print(cell(text, "red"))

    def json(self, data: Any) -> None:
        # Plain stdout (no rich wrapping) so the output is machine-readable.
        click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))

    def table(
        self, columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None
    ) -> None:
        table = Table(title=cell(title) if title else None, header_style="bold")
        for col in columns:
            table.add_column(cell(col), overflow="fold")
        for row in rows:
            table.add_row(*(cell(v) for v in row))
        self.out.print(table)

    def abort(self, message: str | None = None, code: int = ExitCode.HOSTS_FAILED) -> NoReturn:
        if message:
            self.error(message)
        raise Abort(code)

    def fail(self, error: GpuprovError) -> NoReturn:
        """Report an expected error and end with its exit code (the root group calls this)."""
        if isinstance(error, InputError):
            for problem in error.problems:
                self.error(str(problem))
        elif isinstance(error, ConnectError):  # one line per unreachable host
            for line in str(error).splitlines():
                self.error(line)
        else:
            self.error(f"error: {error}")
        raise Abort(error.exit_code)


def run(group: click.Group) -> int:
    """Invoke the CLI (expected errors are mapped by the root group); never show a
    traceback unless --debug was given."""
    debug = "--debug" in sys.argv[1:]
    try:
        rv = group.main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return ExitCode.BAD_INPUT
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        return ExitCode.INTERRUPTED
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return ExitCode.INTERRUPTED
    except Exception as exc:  # the one place the unexpected is caught
        if debug:
            raise
        click.echo(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug)", err=True)
        return ExitCode.INTERNAL
    return rv if isinstance(rv, int) else ExitCode.OK
