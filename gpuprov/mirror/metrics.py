"""Prometheus text exposition (format 0.0.4) for the mirror, written by hand.

Four counters and a gauge do not justify a dependency (prometheus_client); the format is
a few lines of text per sample.
"""

from __future__ import annotations

import time
from collections import defaultdict


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: tuple[tuple[str, str], ...]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


class Metrics:
    def __init__(self) -> None:
        self.started = time.time()
        self.requests: dict[tuple[tuple[str, str], ...], int] = defaultdict(int)
        self.bytes_sent: dict[tuple[tuple[str, str], ...], int] = defaultdict(int)
        self.errors: dict[tuple[tuple[str, str], ...], int] = defaultdict(int)
        self.aborted = 0
        self.in_flight = 0

    def record(self, route: str, status: int, nbytes: int, error_code: str | None) -> None:
        self.requests[(("route", route), ("code", str(status)))] += 1
        self.bytes_sent[(("route", route),)] += nbytes
        if error_code:
            self.errors[(("code", error_code),)] += 1

    def render(self) -> str:
        out: list[str] = []

        def family(name: str, kind: str, help_: str, samples: dict) -> None:
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} {kind}")
            for labels, value in sorted(samples.items()):
                out.append(f"{name}{_labels(labels)} {value}")

        family(
            "gpuprov_mirror_requests_total",
            "counter",
            "HTTP requests by route and status code.",
            self.requests,
        )
        family(
            "gpuprov_mirror_sent_bytes_total",
            "counter",
            "Response body bytes of completed responses, by route.",
            self.bytes_sent,
        )
        family(
            "gpuprov_mirror_errors_total",
            "counter",
            "Error responses by X-Error-Code.",
            self.errors,
        )
        family(
            "gpuprov_mirror_aborted_total",
            "counter",
            "Responses cut short by the client closing the connection.",
            {(): self.aborted},
        )
        family(
            "gpuprov_mirror_in_flight", "gauge", "Requests being served now.", {(): self.in_flight}
        )
        family(
            "gpuprov_mirror_start_time_seconds",
            "gauge",
            "Unix time the server started.",
            {(): round(self.started, 3)},
        )
        return "\n".join(out) + "\n"
