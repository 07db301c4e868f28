"""A job queue that runs each job in the caller's thread (the ``JobQueue`` port)."""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


class FakeJobQueue:
    """Records every submitted id in :attr:`submitted`. Jobs submitted before :meth:`start`
    wait; once started, each submitted job runs at once with ``run`` (in the submitting
    thread), and ids submitted while they run are queued behind them. As the thread queue
    does, an id already waiting or running is not queued again, an exception escaping ``run``
    is logged and the queue goes on, and nothing runs once stopped. Without ``run`` nothing
    ever runs: the queue only records."""

    def __init__(self, run: Callable[[str], None] | None = None) -> None:
        self._run = run
        self.submitted: list[str] = []
        self.ran: list[str] = []
        self._waiting: list[str] = []
        self._running: str | None = None
        self._started = False
        self._stopped = False

    def submit(self, job_id: str) -> None:
        self.submitted.append(job_id)
        if self._stopped or job_id in self._waiting or job_id == self._running:
            return
        self._waiting.append(job_id)
        self._drain()

    def start(self) -> None:
        self._started, self._stopped = True, False
        self._drain()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopped = True

    @property
    def pending(self) -> frozenset[str]:
        """Ids waiting or running now."""
        running = () if self._running is None else (self._running,)
        return frozenset((*self._waiting, *running))

    def _drain(self) -> None:
        if self._run is None or not self._started or self._running is not None:
            return  # not running jobs, or a job running now drains when it ends
        while self._waiting and not self._stopped:
            self._running = self._waiting.pop(0)
            try:
                self._run(self._running)
            except Exception:
                log.exception("job %s: the job runner raised", self._running)
            finally:
                self.ran.append(self._running)
                self._running = None
