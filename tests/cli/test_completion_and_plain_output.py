"""Shell completion (click's, as the shell scripts call it: COMP_WORDS/COMP_CWORD) of
commands, options, step names and inventory host/group names; and plain output: captured
(non-TTY) output carries no control characters, and NO_COLOR on a terminal none either."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEEPOPS = "tests/gpuprov/inventory/ansible_corpus/deepops/inventory"
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # all but tab and newline
MAIN = [sys.executable, "-c", "from gpuprov.cli import main; main()"]


def complete(words: str, shell: str = "bash") -> list[str]:
    parts = words.split(" ")
    env = {**os.environ, "_GPUPROV_COMPLETE": f"{shell}_complete", "COMP_WORDS": words,
           "COMP_CWORD": str(len(parts) - 1)}  # fmt: skip
    # click names the variable after the program: run it as `gpuprov`
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; sys.argv[0] = 'gpuprov'; "
         "from gpuprov.cli import main; main()"],
        capture_output=True, text=True, cwd=REPO, timeout=120, env=env,
    )  # fmt: skip
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    return [line.split(",", 1)[1] for line in proc.stdout.splitlines() if line]


def test_commands_and_options_complete() -> None:
    assert complete("gpuprov inv") == ["inventory"]
    assert set(complete("gpuprov inventory ")) >= {"check", "show", "import"}
    assert complete("gpuprov apply inventories/prod.yaml --on") == ["--only"]


def test_step_names_complete_after_a_comma() -> None:
    assert complete("gpuprov plan inventories/prod.yaml --only driver,c") == [
        "driver,cuda", "driver,container"]  # fmt: skip


def test_host_and_group_names_complete_from_the_inventory() -> None:
    assert complete("gpuprov plan inventories/prod.yaml --limit hg") == ["hgx-h100"]
    got = complete("gpuprov apply --yes inventories/prod.yaml --limit gpu01")
    assert got == [f"gpu01{i}" for i in range(10)]  # expanded from the range gpu[001:032]
    assert complete("gpuprov verify inventories/prod.yaml -l mirror01,sl") == ["mirror01,slurm01"]
    assert complete(f"gpuprov inventory show {DEEPOPS} -l dgx") == ["dgx03", "dgx04"]  # INI too


def test_zsh_gets_descriptions_and_bad_inventories_complete_nothing(tmp_path: Path) -> None:
    words = "gpuprov plan inventories/prod.yaml --limit slurm"
    env = {
        **os.environ,
        "_GPUPROV_COMPLETE": "zsh_complete",
        "COMP_WORDS": words,
        "COMP_CWORD": "4",
    }
    proc = subprocess.run([sys.executable, "-c", "import sys; sys.argv[0] = 'gpuprov'; "
                           "from gpuprov.cli import main; main()"],
                          capture_output=True, text=True, cwd=REPO, timeout=120, env=env)  # fmt: skip
    assert proc.stdout.splitlines() == ["plain", "slurm01", "controller host in controllers"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("cluster: [\n")
    assert complete(f"gpuprov plan {bad} --limit x") == []


CAPTURED = [
    ["--help"],
    ["apply", "--help"],
    ["inventory", "check", "inventories/prod.yaml"],
    ["inventory", "check", DEEPOPS],  # warnings and notes
    ["inventory", "show", "inventories/prod.yaml"],  # a table and a range line
    ["inventory", "show", DEEPOPS, "-o", "json"],
    ["inventory", "check", "tests/gpuprov/inventory/ansible_corpus/nested.yaml", "-x"],  # usage
    ["plan", "inventories/prod.yaml", "--only", "drivr"],  # an error
    ["rollout", "plan", "inventories/prod.yaml"],
]


@pytest.mark.parametrize("no_color", ["", "1"])
@pytest.mark.parametrize("args", CAPTURED, ids=lambda a: " ".join(a[:3]))
def test_captured_output_has_no_control_characters(args: list[str], no_color: str) -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TERM": "xterm-256color",
           "COLUMNS": "120", **({"NO_COLOR": no_color} if no_color else {})}  # fmt: skip
    proc = subprocess.run([*MAIN, *args], capture_output=True, text=True, cwd=REPO, timeout=120,
                          env=env, stdin=subprocess.DEVNULL)  # fmt: skip
    assert proc.stdout or proc.stderr
    for stream in (proc.stdout, proc.stderr):
        bad = CONTROL.findall(stream)
        assert not bad, (args, bad[:5], stream[:300])


def run_on_a_terminal(args: list[str], env: dict[str, str]) -> str:
    leader, follower = pty.openpty()
    proc = subprocess.Popen([*MAIN, *args], stdin=follower, stdout=follower, stderr=follower,
                            env=env, cwd=REPO)  # fmt: skip
    os.close(follower)
    out = b""
    try:
        while True:
            ready, _, _ = select.select([leader], [], [], 60)
            if not ready:
                break
            try:
                data = os.read(leader, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            out += data
    finally:
        os.close(leader)
        proc.wait(timeout=60)
    return out.decode("utf-8", "replace")


@pytest.mark.parametrize("args", [["inventory", "check", DEEPOPS],
                                  ["inventory", "show", "inventories/prod.yaml"]])  # fmt: skip
def test_no_color_on_a_terminal_means_no_escape_sequences(args: list[str]) -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TERM": "xterm-256color",
           "COLUMNS": "120"}  # fmt: skip
    coloured = run_on_a_terminal(args, env)
    assert "\x1b[" in coloured  # the control: a terminal gets styles without NO_COLOR
    plain = run_on_a_terminal(args, {**env, "NO_COLOR": "1"})
    assert "\x1b" not in plain and ("warning" in plain or "range of 32 hosts" in plain)
