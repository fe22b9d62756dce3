"""The scale benchmark's own logic (the benchmark itself runs hundreds of light hosts:
`python -m benchmarks.scale_bench`, not a test)."""

from __future__ import annotations

from benchmarks.scale_bench import LAB_MAX, Run, _failed, lab_sizes, report


def test_sizes_above_one_lab_split_evenly_into_labs() -> None:
    assert lab_sizes(50) == [50]
    assert lab_sizes(LAB_MAX) == [LAB_MAX]
    assert lab_sizes(250) == [125, 125]
    assert lab_sizes(500) == [167, 167, 166]
    assert all(
        len(lab_sizes(n)) == -(-n // LAB_MAX) and sum(lab_sizes(n)) == n for n in range(1, 961)
    )


def test_failures_are_read_from_each_commands_json() -> None:
    assert _failed({"summary": {"failed": 0, "status": "up-to-date"}}) == 0
    assert _failed({"summary": {"failed": 3}}) == 3
    assert _failed({"node01": {"ok": True}, "node02": {"ok": False, "error": "x"}}) == 1
    assert _failed(None) == 0  # no JSON: the exit code counts it (run_gpuprov)


def test_report_fails_on_any_failure_and_prints_ratios_last(capsys) -> None:
    runs = {
        n: {
            name: Run(n / 10, n / 100, 60 + n / 10, n / 50, 0)
            for name in ("facts", "rollout", "no-op")
        }
        for n in (50, 500)
    }
    assert report(runs) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "failures: 0 (must be 0)"
    assert "wall(500)/wall(50)/10 = 1.00" in out[-2] and "control-node cpu ratio 1.00" in out[-2]
    runs[500]["rollout"].failures = 2
    assert report(runs) == 1
