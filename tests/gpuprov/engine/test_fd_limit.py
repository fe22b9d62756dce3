"""The open-file limit: raised at CLI start, and a State too big for it refused up front."""

from __future__ import annotations

import resource
import subprocess
import sys
import textwrap

import pytest

from gpuprov.engine import fd_limit
from gpuprov.errors import InputError

SOFT, HARD = resource.getrlimit(resource.RLIMIT_NOFILE)
needs_room = pytest.mark.skipif(
    HARD != resource.RLIM_INFINITY and HARD <= 256, reason=f"hard open-file limit {HARD} <= 256"
)


@needs_room
def test_cli_start_raises_the_soft_limit_to_the_hard_one() -> None:
    # A fresh process with a low soft limit, as on a stock distribution (1024), runs the
    # CLI's main(); afterwards its soft limit is the hard one.
    script = textwrap.dedent(
        """
        import resource, sys
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        sys.argv = ["gpuprov", "--version"]
        import gpuprov.cli
        from gpuprov.cli import main
        gpuprov.cli._exit_now = sys.exit  # patched commands leave by os._exit: report first
        try:
            main()
        except SystemExit:
            pass
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        print(soft, hard)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    soft, hard = int(out[-2]), int(out[-1])
    assert soft > 256
    assert soft == (fd_limit.NR_OPEN_DEFAULT if hard == resource.RLIM_INFINITY else hard)


@needs_room
def test_a_state_bigger_than_the_limit_is_refused_with_the_fix(monkeypatch) -> None:
    def low(which: int) -> tuple[int, int]:
        assert which == resource.RLIMIT_NOFILE
        return 1024, 1024

    monkeypatch.setattr(resource, "getrlimit", low)
    fd_limit.check(1024 - fd_limit.RESERVE)  # fits exactly
    with pytest.raises(InputError) as exc:
        fd_limit.check(2000)
    message = str(exc.value)
    assert "2000 hosts need about 2128 open files" in message
    assert "may open 1024" in message and "LimitNOFILE" in message and "--limit" in message
