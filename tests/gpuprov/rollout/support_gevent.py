"""Run support.py the way the CLI runs the engine: gevent monkey-patched before anything
imports sockets, threads or subprocess (threads become greenlets)."""

from gevent import monkey

monkey.patch_all()

import runpy  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.argv[0] = str(Path(__file__).with_name("support.py"))
runpy.run_path(sys.argv[0], run_name="__main__")
