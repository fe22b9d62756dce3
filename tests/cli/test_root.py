import subprocess
import sys


def test_help_lists_commands_and_examples():
    out = subprocess.run(
        [sys.executable, "-c", "from gpuprov.cli import main; main()", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Examples:" in out
    assert "Exit codes" in out


def test_unknown_command_is_bad_input_without_traceback():
    proc = subprocess.run(
        [sys.executable, "-c", "from gpuprov.cli import main; main()", "no-such-command"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "No such command" in proc.stderr


def _run_with(command, argv, monkeypatch):
    """Run the real root group (through App.run, as `gpuprov` does) with one extra command."""
    import click
    from gpuprov.cli import gpuprov
    from gpuprov.cli.app import run

    gpuprov.add_command(click.command(name="boom")(command))
    monkeypatch.setattr(sys, "argv", ["gpuprov", *argv])
    try:
        return run(gpuprov)
    finally:
        gpuprov.commands.pop("boom")


def test_the_root_group_maps_every_expected_error_once(monkeypatch, capfd):
    """Commands raise GpuprovError and never catch it: the root group prints it (problems
    one per line, unreachable hosts one per line, else `error: ...`) and exits with its code."""
    from gpuprov.errors import (
        ConnectError,
        ExitCode,
        InputError,
        Location,
        LockedError,
        Problem,
    )

    cases = [
        (
            LockedError("rollout 3 holds the lock"),
            ExitCode.LOCKED,
            ["error: rollout 3 holds the lock"],
        ),
        (
            InputError([Problem(Location("inv.yaml", 4, 3), "unknown key `hsots`")]),
            ExitCode.BAD_INPUT,
            ["inv.yaml:4:3: error: unknown key `hsots`"],
        ),
        (
            ConnectError("gpu001: connection refused\ngpu002: host key unknown"),
            ExitCode.CONNECT_FAILED,
            ["gpu001: connection refused", "gpu002: host key unknown"],
        ),
    ]
    for error, code, lines in cases:

        def command(error=error):
            raise error

        assert _run_with(command, ["boom"], monkeypatch) == code
        err = capfd.readouterr().err
        assert err.splitlines() == lines and "Traceback" not in err


def test_an_unexpected_error_is_internal_and_debug_shows_the_traceback(monkeypatch, capfd):
    import pytest

    from gpuprov.errors import ExitCode

    def command():
        raise KeyError("surprise")

    assert _run_with(command, ["boom"], monkeypatch) == ExitCode.INTERNAL == 70
    assert "internal error: KeyError" in capfd.readouterr().err
    with pytest.raises(KeyError):
        _run_with(command, ["--debug", "boom"], monkeypatch)


def test_no_command_catches_gpuprov_error_itself():
    """One error path: no `except GpuprovError`/`InputError` under cli/ but the root group's,
    and commands raise rather than report (`app.fail` is the root group's)."""
    from pathlib import Path

    cli = Path(__file__).resolve().parents[2] / "cli"
    catching = [
        str(p.relative_to(cli))
        for p in cli.rglob("*.py")
        if "except GpuprovError" in p.read_text()
        or "except InputError" in p.read_text()
        or "except ConnectError" in p.read_text()
    ]
    assert catching == ["__init__.py"]
    reporting = [str(p.relative_to(cli)) for p in cli.rglob("*.py") if ".fail(" in p.read_text()]
    assert reporting == ["__init__.py"]


def _commands():
    """(path, click command) for every command of the tree, loading the lazy ones."""
    import click
    from gpuprov.cli import gpuprov

    todo = [("gpuprov", gpuprov)]
    while todo:
        path, cmd = todo.pop()
        if isinstance(cmd, click.Group):
            ctx = click.Context(cmd)
            todo += [(f"{path} {n}", cmd.get_command(ctx, n)) for n in cmd.list_commands(ctx)]
        else:
            yield path, cmd


def test_dash_o_always_means_the_output_format():
    """-o/--output is the format (table|json) wherever it exists; files are --to or arguments."""
    import click

    seen = []
    for path, cmd in _commands():
        for param in cmd.params:
            if "-o" in param.opts or "--output" in param.opts:
                assert set(param.opts) == {"-o", "--output"}, path
                assert isinstance(param.type, click.Choice), path
                assert list(param.type.choices) == ["table", "json"], path
                seen.append(path)
    assert "gpuprov lab inventory" not in seen and "gpuprov inventory import" not in seen
    for printing in ("plan", "facts", "verify", "rollout status", "mirror list", "repo publish"):
        assert f"gpuprov {printing}" in seen


def test_exit_codes_are_named():
    """Every exit code a command chooses is an ExitCode member, never a bare number."""
    import re
    from pathlib import Path

    cli = Path(__file__).resolve().parents[2] / "cli"
    literal = re.compile(r"abort\([^()]*,\s*\d+\s*\)|Abort\(\s*\d+\s*\)|return\s+(?:2|70)\b")
    found = [
        f"{p.relative_to(cli)}: {m.group(0)}"
        for p in cli.rglob("*.py")
        for m in literal.finditer(p.read_text())
    ]
    assert found == []
