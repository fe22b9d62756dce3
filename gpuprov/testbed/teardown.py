"""TEST BED: tear labs down however the process ends.

Every running lab (light hosts, VMs) registers here; atexit and SIGINT/SIGTERM handlers
close them all before the previous handler runs. A SIGKILLed process leaves its slot
behind, and the next allocation of that slot cleans it (netalloc.cleanup_stale).
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
from types import FrameType
from typing import Any, Protocol


class Closable(Protocol):
    def close(self) -> None: ...


_LIVE: list[Closable] = []
_PREVIOUS: dict[int, Any] = {}
_installed = False


def close_all() -> None:
    for lab in list(reversed(_LIVE)):
        lab.close()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    close_all()
    previous = _PREVIOUS.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)  # e.g. Python's SIGINT handler: KeyboardInterrupt
    elif previous != signal.SIG_IGN:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def register(lab: Closable) -> None:
    global _installed
    if lab not in _LIVE:
        _LIVE.append(lab)
    if _installed:
        return
    _installed = True
    atexit.register(close_all)
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGINT, signal.SIGTERM):
        current = signal.getsignal(sig)
        if current is not _on_signal:
            _PREVIOUS[sig] = current
            signal.signal(sig, _on_signal)


def unregister(lab: Closable) -> None:
    if lab in _LIVE:
        _LIVE.remove(lab)
