"""A job queue of worker threads inside the server process (the ``JobQueue`` port).

``workers`` daemon threads take job ids from one FIFO and call ``run(job_id)``. The queue
holds ids only: the job's state lives in the database, and ``run`` claims the job there
atomically, so an id submitted twice, or a job also picked up elsewhere, still runs once. Ids
already queued or running are not queued again. ``run`` is expected to handle its own errors;
an exception escaping it is logged and the thread goes on with the next job.

The threads only wait for the heavy work, which runs in limited worker processes.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

_STOP = object()


class ThreadJobQueue:
    """Runs submitted job ids with ``run``, at most ``workers`` at a time."""

    def __init__(self, workers: int, run: Callable[[str], None]) -> None:
        if workers < 1:
            raise ValueError("a job queue needs at least one worker")
        self.workers = workers
        self._run = run
        self._queue: queue.Queue[object] = queue.Queue()
        self._lock = threading.Lock()
        self._pending: set[str] = set()  # queued or running
        self._threads: list[threading.Thread] = []
        self._stopping = False

    def submit(self, job_id: str) -> None:
        """Queue ``job_id`` unless it is already queued or running, or the queue is stopping."""
        with self._lock:
            if self._stopping or job_id in self._pending:
                return
            self._pending.add(job_id)
        self._queue.put(job_id)

    def start(self) -> None:
        """Start the worker threads (once)."""
        with self._lock:
            if self._threads:
                return
            self._stopping = False
            for n in range(self.workers):
                thread = threading.Thread(target=self._work, name=f"imageport-job-{n}",
                                          daemon=True)
                self._threads.append(thread)
                thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking work and wait up to ``timeout`` seconds for running jobs to finish.

        Jobs still queued stay INIT in the database and are resubmitted at the next start-up;
        a job still running when the server exits is recovered then too.
        """
        with self._lock:
            self._stopping = True
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(_STOP)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._threads = [t for t in threads if t.is_alive()]

    @property
    def pending(self) -> frozenset[str]:
        """Ids queued or running now."""
        with self._lock:
            return frozenset(self._pending)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP or not isinstance(item, str):
                return
            with self._lock:
                stopping = self._stopping
            try:
                if not stopping:
                    self._run(item)
            except Exception:
                log.exception("job %s: the job runner raised", item)
            finally:
                with self._lock:
                    self._pending.discard(item)
