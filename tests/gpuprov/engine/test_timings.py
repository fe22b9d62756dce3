"""The --timings recorder: contiguous phases that add up to the wall, from the process's
own start (read from /proc here, as on every control node)."""

from __future__ import annotations

import subprocess
import sys
import time

from gpuprov.engine.timings import FactTiming, Timings, process_age


def test_phases_are_contiguous_and_add_up_to_the_wall() -> None:
    t = Timings.from_process_start()
    time.sleep(0.02)
    t.mark("connect")
    time.sleep(0.03)
    t.mark("facts")
    t.mark("connect")  # marked again: adds up
    time.sleep(0.01)
    doc = t.to_dict()
    assert list(doc["phases"]) == ["connect", "facts", "other"]
    assert doc["phases"]["facts"] >= 0.03 and doc["phases"]["other"] >= 0.01
    assert abs(sum(doc["phases"].values()) - doc["wall"]) < 0.001
    assert "facts" not in doc  # no host was timed


def test_fact_spread_over_hosts() -> None:
    t = Timings.from_process_start()
    t.facts = {
        "a": FactTiming(0.2, 0.1),
        "b": FactTiming(0.4, None),  # a host whose date has no %N
        "c": FactTiming(0.3, 0.2),
    }
    facts = t.to_dict()["facts"]
    assert facts["hosts"] == 3
    assert facts["round_trip"] == {"min": 0.2, "median": 0.3, "max": 0.4}
    assert facts["script"] == {"min": 0.1, "median": 0.15, "max": 0.2}


def test_each_host_apart() -> None:
    """A mirror host's script is not a GPU host's: each host's connect, round trip and
    script are reported by name; a host that did not answer the fact has its connect only."""
    t = Timings.from_process_start()
    t.connects = {"mirror01": 1.5, "gpu01": 2.0, "gpu02": 0.5}
    t.facts = {"mirror01": FactTiming(3.0, 2.5), "gpu01": FactTiming(4.0, None)}
    assert t.to_dict()["hosts"] == {
        "mirror01": {"connect": 1.5, "round_trip": 3.0, "script": 2.5},
        "gpu01": {"connect": 2.0, "round_trip": 4.0},
        "gpu02": {"connect": 0.5},
    }
    assert "hosts" not in Timings.from_process_start().to_dict()


def test_process_age_counts_the_interpreter_start() -> None:
    """A child that sleeps before asking: its age includes the sleep (10 ms ticks)."""
    code = (
        "import time; time.sleep(0.3); from gpuprov.engine.timings import process_age; "
        "print(process_age())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    age = float(out.stdout)
    assert 0.29 <= age < 5
    assert process_age() is not None
