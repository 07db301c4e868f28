"""A job queue of worker threads inside the server process (the ``JobQueue`` port), fair
across projects.

``workers`` daemon threads call ``run(job_id)`` for submitted job ids. The queue holds ids
only: the job's state lives in the database, and ``run`` claims the job there atomically, so an
id submitted twice, or a job also picked up elsewhere, still runs once. Ids already queued or
running are not queued again. ``run`` is expected to handle its own errors; an exception
escaping it is logged and the thread goes on with the next job.

**Fairness.** Each job belongs to an *owner* (its project, from ``owner_of(job_id)``). Waiting
jobs are kept per owner, first in, first out within an owner, and a free worker takes the next
job of the next owner in turn (round robin), skipping owners that already run
``per_owner`` jobs. So one project that submits many jobs, or jobs that hold a worker for a long
time (a hostile image), delays its own later jobs, not another project's: with the default of
``per_owner = max(1, workers // 2)``, at least half of the workers stay free for the others.

The threads only wait for the heavy work, which runs in limited worker processes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)


def default_per_owner(workers: int) -> int:
    """Jobs one owner may run at once when the setting says 0 (automatic)."""
    return max(1, workers // 2)


class ThreadJobQueue:
    """Runs submitted job ids with ``run``, at most ``workers`` at a time and at most
    ``per_owner`` of one owner's (0: :func:`default_per_owner`), owners taking turns."""

    def __init__(
        self,
        workers: int,
        run: Callable[[str], None],
        *,
        owner_of: Callable[[str], str] | None = None,
        per_owner: int = 0,
    ) -> None:
        if workers < 1:
            raise ValueError("a job queue needs at least one worker")
        if per_owner < 0:
            raise ValueError("per_owner must be 0 (automatic) or more")
        self.workers = workers
        self.per_owner = per_owner or default_per_owner(workers)
        self._run = run
        self._owner_of = owner_of or (lambda job_id: "")
        self._cond = threading.Condition()
        self._waiting: dict[str, deque[str]] = {}  # owner -> its queued job ids
        self._turns: deque[str] = deque()  # owners with queued jobs, next turn first
        self._running: dict[str, int] = {}  # owner -> jobs running now
        self._pending: set[str] = set()  # queued or running
        self._threads: list[threading.Thread] = []
        self._stopping = False

    def submit(self, job_id: str) -> None:
        """Queue ``job_id`` unless it is already queued or running, or the queue is stopping."""
        with self._cond:
            if self._stopping or job_id in self._pending:
                return
        try:
            owner = self._owner_of(job_id)
        except Exception:  # an unknown job still runs: ``run`` decides what it is
            log.exception("job %s: its project could not be looked up", job_id)
            owner = ""
        with self._cond:
            if self._stopping or job_id in self._pending:
                return
            self._pending.add(job_id)
            waiting = self._waiting.setdefault(owner, deque())
            if not waiting:
                self._turns.append(owner)
            waiting.append(job_id)
            self._cond.notify()

    def start(self) -> None:
        """Start the worker threads (once)."""
        with self._cond:
            if self._threads:
                return
            self._stopping = False
            for n in range(self.workers):
                thread = threading.Thread(target=self._work, name=f"imageport-job-{n}", daemon=True)
                self._threads.append(thread)
                thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking work and wait up to ``timeout`` seconds for running jobs to finish.

        Jobs still queued stay INIT in the database and are resubmitted at the next start-up;
        a job still running when the server exits is recovered then too.
        """
        with self._cond:
            self._stopping = True
            threads = list(self._threads)
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        with self._cond:
            self._threads = [t for t in threads if t.is_alive()]

    @property
    def pending(self) -> frozenset[str]:
        """Ids queued or running now."""
        with self._cond:
            return frozenset(self._pending)

    def _next(self) -> tuple[str, str] | None:
        """The next ``(owner, job_id)`` to run, in turn order, or None when every owner with
        waiting jobs is at its limit (called with the lock held)."""
        for _ in range(len(self._turns)):
            owner = self._turns[0]
            self._turns.rotate(-1)
            if self._running.get(owner, 0) >= self.per_owner:
                continue
            waiting = self._waiting[owner]
            job_id = waiting.popleft()
            if not waiting:
                del self._waiting[owner]
                self._turns.remove(owner)
            self._running[owner] = self._running.get(owner, 0) + 1
            return owner, job_id
        return None

    def _work(self) -> None:
        while True:
            with self._cond:
                taken = None
                while not self._stopping and (taken := self._next()) is None:
                    self._cond.wait()
                if taken is None:
                    return
            owner, job_id = taken
            try:
                self._run(job_id)
            except Exception:
                log.exception("job %s: the job runner raised", job_id)
            finally:
                with self._cond:
                    self._pending.discard(job_id)
                    left = self._running[owner] - 1
                    if left:
                        self._running[owner] = left
                    else:
                        del self._running[owner]
                    self._cond.notify_all()
