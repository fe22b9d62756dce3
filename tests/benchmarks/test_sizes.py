"""Which host counts a benchmark runs: quick by default (`python -m benchmarks` runs them
all), the full sizes or a list from GPUPROV_BENCH_SIZES."""

from __future__ import annotations

import pytest

from benchmarks import ansible_bench, scale_bench
from benchmarks.sizes import bench_sizes, parse_sizes


def test_a_list_is_sorted_and_deduplicated() -> None:
    assert parse_sizes("500, 50,100,50", (1,), (2,), 960, "--sizes") == [50, 100, 500]
    assert parse_sizes("quick", (100, 50), (9,), 960, "--sizes") == [50, 100]
    assert parse_sizes("full", (1,), (500, 50, 250), 960, "--sizes") == [50, 250, 500]


@pytest.mark.parametrize("bad", ["", "50,x", "0", "-5", "100000", "50,,100", "1e3", "961"])
def test_bad_sizes_are_refused_naming_where(bad: str) -> None:
    with pytest.raises(SystemExit, match="^--sizes: "):
        parse_sizes(bad, (1,), (2,), 960, "--sizes")


def test_the_environment_picks_quick_full_or_a_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GPUPROV_BENCH_SIZES", raising=False)
    assert bench_sizes(scale_bench.QUICK_SIZES, scale_bench.FULL_SIZES, 960) == [50, 100]
    assert bench_sizes(ansible_bench.QUICK_SIZES, ansible_bench.FULL_SIZES, 240) == [1, 5]
    monkeypatch.setenv("GPUPROV_BENCH_SIZES", "full")
    assert bench_sizes(scale_bench.QUICK_SIZES, scale_bench.FULL_SIZES, 960) == [50, 100, 250, 500]
    assert bench_sizes(ansible_bench.QUICK_SIZES, ansible_bench.FULL_SIZES, 240) == [1, 5, 20, 100]
    monkeypatch.setenv("GPUPROV_BENCH_SIZES", "20")
    assert bench_sizes((1,), (2,), 240) == [20]
    monkeypatch.setenv("GPUPROV_BENCH_SIZES", "300")
    with pytest.raises(SystemExit, match="^GPUPROV_BENCH_SIZES: host counts must be 1..240"):
        bench_sizes((1,), (2,), 240)
