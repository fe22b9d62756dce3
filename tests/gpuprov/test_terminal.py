"""Host and user text is shown literally: brackets, rich tags and ANSI escapes in host names,
errors and hook output neither crash rich (MarkupError) nor restyle nor reach the terminal."""

from __future__ import annotations

import io

import pytest
from gpuprov.cli.app import App
from rich.console import Console

from gpuprov.rollout.planner import Wave
from gpuprov.rollout.progress import LiveProgress, PlainProgress
from gpuprov.terminal import cell, plain

HOSTILE = [
    "cannot open [/etc/cdi/nvidia.yaml]",  # rich reads [/...] as a closing tag: MarkupError
    "[bold red]gpu001[/bold red]",
    "[link=http://evil]click[/link]",
    "drain hook said: \x1b[31mred\x1b[0m \x1b]0;title\x07 done",
    "8-bit CSI \x9b2J and a NUL \x00 here",
]


def test_plain_shows_control_characters_and_keeps_the_rest():
    assert plain("a\x1b[31mb") == "a\\x1b[31mb"
    assert plain("x\x9by\x00z\x7f") == "x\\x9by\\x00z\\x7f"
    assert plain("tabs\tand\nlines [stay]") == "tabs\tand\nlines [stay]"
    assert plain(None) == ""
    assert cell("[red]x[/red]").plain == "[red]x[/red]"


def _escapes_only_from_rich(out: str) -> None:
    # rich emits CSI m (style) sequences; a host's own ESC arrives as the text \x1b.
    assert "\x1b]0;" not in out and "\x07" not in out and "\x9b" not in out
    assert "\x1b[31mred" not in out and "\x00" not in out


def test_app_table_and_messages_render_hostile_text_literally(monkeypatch):
    app = App()
    buf, err = io.StringIO(), io.StringIO()
    app.out = Console(file=buf, force_terminal=True, width=400)
    app.err = Console(file=err, force_terminal=True, width=400)
    app.table(["host", "error"], [(t, t) for t in HOSTILE], title="[bold]x[/]")
    for text in HOSTILE:
        app.error(text)
        app.info(text)
    out = buf.getvalue()
    assert "cannot open [/etc/cdi/nvidia.yaml]" in out
    assert "[bold red]gpu001[/bold red]" in out and "[link=http://evil]" in out
    assert "\\x1b[31mred\\x1b[0m" in out and "\\x9b2J" in out
    assert "[bold]x[/]" in out
    assert "[link=http://evil]click[/link]" in err.getvalue()
    _escapes_only_from_rich(out + err.getvalue())


@pytest.mark.parametrize("terminal", [True, False])
def test_rollout_progress_renders_hostile_host_names_errors_and_hook_output(terminal):
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=terminal, width=400)
    progress = LiveProgress(console) if terminal else PlainProgress(console.file)
    hosts = tuple(HOSTILE[:3])
    wave = Wave(index=0, name="[b]canary[/b]", hosts=hosts, canary=True)
    progress.wave_started(wave, list(hosts))
    for host, error in zip(hosts, HOSTILE[2:], strict=False):
        progress.host_update(host, "running", "drain [hook]", "")
        progress.host_update(host, "failed", "drain [hook]", error)
    progress.wave_finished(wave, failures=3, allowed=0, halted=True)
    out = buf.getvalue()
    assert "[b]canary[/b]" in out
    for host in hosts:
        assert host in out
    assert "drain [hook]" in out
    assert "\\x1b[31mred\\x1b[0m" in out and "\\x9b2J" in out
    _escapes_only_from_rich(out)
    if not terminal:
        assert "\x1b" not in out
