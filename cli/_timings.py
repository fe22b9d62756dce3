"""`--timings`: the run's phases (gpuprov.engine.timings) as a table on stderr."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.table import Table

if TYPE_CHECKING:
    from gpuprov.cli.app import App


def report() -> dict[str, Any]:
    from gpuprov.engine import timings

    return timings.current().to_dict()


def show_timings(app: App, doc: dict[str, Any]) -> None:
    """The phases with their share of the wall, then the fact round trip's spread over
    the hosts: on the control node vs the script's own time on the host; then each host's
    connect, round trip and script."""
    wall = doc["wall"] or 1e-9
    table = Table(title="timings", header_style="bold")
    for col in ("phase", "seconds", "share"):
        table.add_column(col, justify="left" if col == "phase" else "right")
    for name, seconds in doc["phases"].items():
        table.add_row(name, f"{seconds:.3f}", f"{100 * seconds / wall:.0f}%")
    table.add_row("wall", f"{doc['wall']:.3f}", "100%", style="bold")
    app.err.print(table)
    facts = doc.get("facts")
    if facts:
        trip = facts["round_trip"]
        line = (
            f"fact round trip over {facts['hosts']} hosts (control node): "
            f"min {trip['min']:.3f} s, median {trip['median']:.3f} s, max {trip['max']:.3f} s"
        )
        if "script" in facts:
            script = facts["script"]
            line += (
                f"; the script on the host: min {script['min']:.3f} s, "
                f"median {script['median']:.3f} s, max {script['max']:.3f} s"
            )
        app.err.print(line)
    for name, each in doc.get("hosts", {}).items():
        parts = [f"{key.replace('_', ' ')} {each[key]:.3f} s"
                 for key in ("connect", "round_trip", "script") if key in each]  # fmt: skip
        app.err.print(f"  {name}: {', '.join(parts)}", markup=False, highlight=False)
