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
