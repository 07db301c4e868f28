"""How many boot tests run at once on this host: ``settings.boot_test_concurrency`` places.

A boot test is a QEMU machine of 1 GiB and two vCPUs that runs for up to minutes under TCG, so
the host runs few at a time (one by default), whoever asked: the boot-test job
(:mod:`imageport.service.jobs.boot_job`) and the boot phase of an import
(:mod:`imageport.service.jobs.import_boot`) take a place here first.

The two wait differently. A boot-test job that finds no free place does not hold a worker
thread while it waits: it stays ``INIT`` and asks to be run again a moment later
(:meth:`BootSlots.take_now`, then :data:`RETRY_SECONDS`), so the other jobs keep every worker.
An import is already ``RUNNING`` when it reaches its boot phase; it waits in its thread
(:meth:`BootSlots.take`), noticing a cancellation while it does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

#: Seconds after which a boot-test job that found no free place is submitted again.
RETRY_SECONDS = 2.0
#: How often a waiting import looks at its cancellation.
POLL_SECONDS = 0.5


class BootSlots:
    """``size`` places for boot tests (0: none, boot tests are not offered)."""

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError("boot test places must be 0 or more")
        self.size = size
        self._taken = 0
        self._cond = threading.Condition()

    @property
    def taken(self) -> int:
        """Places in use now."""
        with self._cond:
            return self._taken

    def take_now(self) -> bool:
        """Take a place if one is free; False at once otherwise."""
        with self._cond:
            if self._taken >= self.size:
                return False
            self._taken += 1
            return True

    def take(self, cancelled: Callable[[], bool]) -> bool:
        """Wait for a free place and take it; False (nothing taken) as soon as ``cancelled()``
        answers True, or at once when there are no places at all."""
        with self._cond:
            while self._taken >= self.size:
                if self.size == 0 or cancelled():
                    return False
                self._cond.wait(POLL_SECONDS)
            self._taken += 1
            return True

    def give_back(self) -> None:
        """Free a place taken with :meth:`take_now` or :meth:`take`."""
        with self._cond:
            if self._taken <= 0:
                raise RuntimeError("no boot test place was taken")
            self._taken -= 1
            self._cond.notify()
