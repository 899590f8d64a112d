"""Stop signals for the long-running commands: the first one stops, later ones wait.

Ctrl-C and SIGTERM raise :class:`KeyboardInterrupt` so that ``finally`` blocks stop what
a command started. A second signal arriving during that shutdown would interrupt it and
leave children (the pipeline, Connect, the broker, private databases) without a parent;
so once the shutdown begins, further stop signals are ignored until the command exits.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def ignore_stop_signals() -> None:
    """From now on SIGINT and SIGTERM are ignored (main thread only; a no-op elsewhere)."""
    if threading.current_thread() is threading.main_thread():
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)


@contextlib.contextmanager
def stop_signals_once() -> Iterator[None]:
    """Within the block, the first SIGINT or SIGTERM raises ``KeyboardInterrupt`` and
    later ones are ignored; the previous handlers are restored on exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame: object) -> None:
        ignore_stop_signals()
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {signum: signal.signal(signum, stop) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
