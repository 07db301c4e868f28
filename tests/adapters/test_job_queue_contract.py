"""The ``JobQueue`` port's contract, held against the thread queue the server runs and the fake
the service tests use: every submitted job runs once, an id already waiting is not queued
twice, a finished job may be submitted again, a failing job does not stop the queue, and a
stopped queue runs nothing more."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from imageport.adapters.job_queue import ThreadJobQueue
from imageport.service.ports import JobQueue
from support.fakes import FakeJobQueue

Maker = Callable[[Callable[[str], None]], JobQueue]


@pytest.fixture(params=["thread", "fake"])
def make_queue(request: pytest.FixtureRequest) -> Iterator[Maker]:
    """Builds each implementation around a ``run``; stops what it built afterwards."""
    made: list[JobQueue] = []

    def make(run: Callable[[str], None]) -> JobQueue:
        queue: JobQueue = ThreadJobQueue(2, run) if request.param == "thread" else FakeJobQueue(run)
        made.append(queue)
        return queue

    yield make
    for queue in made:
        queue.stop(timeout=5)


class Ran:
    """A ``run`` that records job ids (and raises for ``boom``)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ids: list[str] = []

    def __call__(self, job_id: str) -> None:
        with self.lock:
            self.ids.append(job_id)
        if job_id == "boom":
            raise RuntimeError("job runner bug")

    def wait_for(self, count: int, timeout: float = 10.0) -> list[str]:
        """The ids run, sorted, once ``count`` have run (or ``timeout`` seconds passed)."""
        deadline = time.monotonic() + timeout
        while len(self.ids) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)  # and nothing more comes
        return sorted(self.ids)


def test_jobs_submitted_before_start_run_once_each_after_it(make_queue: Maker) -> None:
    ran = Ran()
    queue = make_queue(ran)
    for job_id in ("a", "b", "a"):
        queue.submit(job_id)
    time.sleep(0.05)
    assert ran.ids == []  # nothing runs before start
    queue.start()
    assert ran.wait_for(2) == ["a", "b"]


def test_a_finished_job_may_run_again_and_a_failure_does_not_stop_the_queue(
    make_queue: Maker, caplog: pytest.LogCaptureFixture
) -> None:
    ran = Ran()
    queue = make_queue(ran)
    queue.start()
    queue.submit("a")
    assert ran.wait_for(1) == ["a"]
    queue.submit("a")
    assert ran.wait_for(2) == ["a", "a"]
    queue.submit("boom")
    queue.submit("after")
    assert ran.wait_for(4) == ["a", "a", "after", "boom"]
    assert "job boom: the job runner raised" in caplog.text


def test_a_stopped_queue_runs_nothing_more(make_queue: Maker) -> None:
    ran = Ran()
    queue = make_queue(ran)
    queue.start()
    queue.submit("a")
    assert ran.wait_for(1) == ["a"]
    queue.stop(timeout=5)
    queue.submit("late")
    assert ran.wait_for(2, timeout=0.5) == ["a"]
