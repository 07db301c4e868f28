"""How a worker process talks to the job that started it (:mod:`imageport.worker.launcher`).

Progress goes to stdout as ``progress DONE TOTAL`` lines (at most about ten a second, and the
last one always); a reason goes to stderr; the exit status says how it ended: 0 done, 1 the
input cannot be read or converted, 2 bad arguments, :data:`EXIT_MEMORY` the address-space limit
was reached (a ``MemoryError`` anywhere in the worker).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

EXIT_MEMORY = 3


def progress_printer(interval: float = 0.1) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` callback that prints ``progress DONE TOTAL`` lines."""
    last = 0.0

    def progress(done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= interval or done == total:
            last = now
            sys.stdout.write(f"progress {done} {total}\n")
            sys.stdout.flush()

    return progress


def run_main(main: Callable[[list[str]], int]) -> None:
    """Exit with ``main(sys.argv[1:])``'s status; :data:`EXIT_MEMORY` (at once, without
    unwinding) when memory ran out."""
    try:
        code = main(sys.argv[1:])
    except MemoryError:
        os.write(2, b"imageport worker: MemoryError: out of memory (address-space limit)\n")
        os._exit(EXIT_MEMORY)
    sys.exit(code)
