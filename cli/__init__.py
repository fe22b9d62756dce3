"""The `gpuprov` command: a click group whose subcommands load lazily (fast --help)."""

from __future__ import annotations

import importlib
import sys

import click

from gpuprov import __version__

# name -> "module:attribute" (modules relative to gpuprov.cli). One line per command.
COMMANDS: dict[str, str] = {
    "apply": "apply.command:apply",
    "bundle": "bundle:bundle",
    "facts": "facts:facts",
    "hosts": "hosts:hosts",
    "plan": "plan:plan",
    "repo": "repo:repo",
    "inventory": "inventory:inventory",
    "lab": "lab:lab",
    "rollout": "rollout:rollout",
    "mirror": "mirror:mirror",
    "verify": "verify:verify",
}


class LazyGroup(click.Group):
    def __init__(self, *args, lazy: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = lazy or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            module, attr = self.lazy[cmd_name].split(":")
            return getattr(importlib.import_module(f"gpuprov.cli.{module}"), attr)
        return super().get_command(ctx, cmd_name)


class RootGroup(LazyGroup):
    """The one place an expected error (GpuprovError) becomes a message and an exit code:
    commands raise, they never catch to print."""

    def invoke(self, ctx: click.Context):
        from gpuprov.errors import GpuprovError

        try:
            return super().invoke(ctx)
        except GpuprovError as exc:
            from gpuprov.cli.app import App

            (ctx.obj if isinstance(ctx.obj, App) else App()).fail(exc)


@click.group(
    cls=RootGroup,
    lazy=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="""\b
Examples:
  gpuprov inventory check inventories/example.yaml
  gpuprov hosts trust inventories/lab.yaml
  gpuprov facts inventories/lab.yaml
  gpuprov plan inventories/lab.yaml
  gpuprov apply inventories/lab.yaml --yes
  gpuprov verify inventories/lab.yaml --output json

Exit codes: 0 ok, 1 a host or check failed, 2 bad input, 3 could not connect,
4 rollout halted, 5 rollout locked, 70 internal error, 130 interrupted (docs/exit-codes.md).""",
)
@click.version_option(__version__, prog_name="gpuprov")
@click.option("--debug", is_flag=True, help="Show tracebacks for unexpected errors.")
@click.pass_context
def gpuprov(ctx: click.Context, debug: bool) -> None:
    """Provision on-prem and air-gapped NVIDIA GPU clusters."""
    from gpuprov.cli.app import App

    ctx.obj = App(debug=debug)


# Commands that never touch pyinfra skip the patch: asyncio (mirror serve) then runs on the
# real threads, selectors and sockets it is written (and tested) for, and the lab's threads
# and subprocesses stay what they were when it ran as its own program.
UNPATCHED = (
    ("mirror", "serve"),
    # local files only: patched, their hashing threads were greenlets on one OS thread
    # (seen: `bundle verify` ran with 1 thread, --threads and the hash pipeline idle)
    ("bundle", "export"),
    ("bundle", "verify"),
    # the lab drives vagrant and gpuprov subprocesses, never pyinfra in this process
    *(("lab", cmd) for cmd in ("demo", "clean", "box", "hardware", "capture")),
)


def _needs_gevent(argv: list[str]) -> bool:
    words = [a for a in argv if not a.startswith("-")]
    return not any(tuple(words[: len(cmd)]) == cmd for cmd in UNPATCHED)


def _patch_gevent() -> None:
    """monkey.patch_all(), reading the installed packages' entry points once. gevent looks
    up plugins for each of its ~25 patch events by scanning every distribution's metadata
    again (0.3-0.5 s on every command here); the same plugins are found either way."""
    import importlib.metadata as metadata

    from gevent import monkey

    real = metadata.entry_points
    found = real()

    def entry_points(**params):  # the only form gevent uses: entry_points(group=...)
        return found.select(**params) if params else found

    metadata.entry_points = entry_points  # type: ignore[assignment]
    try:
        monkey.patch_all()
    finally:
        metadata.entry_points = real


def main() -> None:
    from gpuprov.engine import timings
    from gpuprov.engine.fd_limit import raise_soft_limit

    timings.restart()  # --timings: phases from the process start (docs/performance.md)
    timings.mark("python startup")
    # One SSH socket per host, all at once: a site outgrows the usual soft limit of 1024
    # open files (docs/scale.md). The hard limit is ours to use; raise the soft one to it.
    raise_soft_limit()
    # gevent must patch before pyinfra/paramiko import sockets, or hosts run one by one.
    patched = _needs_gevent(sys.argv[1:])
    if patched:
        _patch_gevent()
        timings.mark("gevent patch")
    from gpuprov.cli.app import run

    code = run(gpuprov)
    if patched:
        _exit_now(code)
    sys.exit(code)


def _exit_now(code: int) -> None:
    """End without the interpreter's teardown: freeing every module and object of pyinfra,
    paramiko and gevent one by one took 0.1-0.9 s after the work was done
    (docs/performance.md). What must happen at exit still does: the atexit handlers
    (logging, weakref.finalize cleanups) run, stdout and stderr are flushed. Only for the
    gevent-patched commands: their threads are greenlets, none is left to wait for."""
    import atexit
    import os

    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # a closed pipe (`| head`): as Python itself reports it
        code = code or 120
    os._exit(code)
