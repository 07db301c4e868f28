"""The thread job queue: runs every submitted job once, at most ``workers`` at a time, survives
a failing job, and stops taking work when stopped."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from imageport.adapters.job_queue import ThreadJobQueue


class Recorder:
    """A ``run`` that records job ids and how many ran at once; blocks until released."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ran: list[str] = []
        self.running = 0
        self.most = 0
        self.release = threading.Event()

    def __call__(self, job_id: str) -> None:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        self.release.wait(10)
        with self.lock:
            self.running -= 1
            self.ran.append(job_id)
        if job_id == "boom":
            raise RuntimeError("job runner bug")


def _wait(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_jobs_run_once_each_at_most_workers_at_a_time() -> None:
    run = Recorder()
    q = ThreadJobQueue(2, run, per_owner=2)
    q.start()
    for job_id in ["a", "b", "c", "a", "d", "b"]:
        q.submit(job_id)
    _wait(lambda: run.running == 2)
    time.sleep(0.1)
    assert run.running == 2  # the pool is bounded
    assert q.pending == {"a", "b", "c", "d"}  # duplicates of queued/running ids were dropped
    run.release.set()
    _wait(lambda: len(run.ran) == 4 and not q.pending)
    assert sorted(run.ran) == ["a", "b", "c", "d"] and run.most == 2
    q.stop(timeout=5)


def test_a_job_can_be_submitted_again_once_finished_and_a_failure_does_not_stop_the_queue() -> None:
    run = Recorder()
    run.release.set()
    q = ThreadJobQueue(1, run)
    q.start()
    q.submit("boom")
    q.submit("x")
    _wait(lambda: len(run.ran) == 2)
    q.submit("x")
    _wait(lambda: len(run.ran) == 3)
    assert run.ran == ["boom", "x", "x"]
    q.stop(timeout=5)


def test_stop_stops_taking_work_and_waits_for_running_jobs() -> None:
    run = Recorder()
    q = ThreadJobQueue(1, run)
    q.start()
    q.submit("first")
    q.submit("second")
    _wait(lambda: run.running == 1)
    threading.Timer(0.3, run.release.set).start()
    q.stop(timeout=5)
    assert run.ran == ["first"]  # the queued job stays for the next start-up
    q.submit("late")
    time.sleep(0.1)
    assert run.ran == ["first"]


def test_a_queue_needs_a_worker() -> None:
    with pytest.raises(ValueError, match="at least one worker"):
        ThreadJobQueue(0, lambda job_id: None)


def test_owners_take_turns_whatever_the_order_of_submission() -> None:
    run = Recorder()
    run.release.set()
    q = ThreadJobQueue(1, run, owner_of=lambda job_id: job_id[0])
    for job_id in ["a1", "a2", "a3", "a4", "b1", "b2", "c1"]:
        q.submit(job_id)
    q.start()
    _wait(lambda: len(run.ran) == 7)
    # first in, first out within an owner; one job of each owner in turn
    assert run.ran == ["a1", "b1", "c1", "a2", "b2", "a3", "a4"]
    q.stop(timeout=5)


def test_one_owner_cannot_hold_every_worker() -> None:
    """Issue 9, finding 4: a project's long jobs (hostile images) must not make another
    project's job wait for them."""
    run = Recorder()
    q = ThreadJobQueue(2, run, owner_of=lambda job_id: job_id.split("-")[0])
    assert q.per_owner == 1  # half of two workers
    q.start()
    for n in range(4):
        q.submit(f"hostile-{n}")
    _wait(lambda: run.running == 1)
    time.sleep(0.1)
    assert run.running == 1  # the second worker stays free for others
    q.submit("victim-1")
    _wait(lambda: run.running == 2)
    assert run.running == 2 and run.ran == []  # it started before any hostile job ended
    run.release.set()
    _wait(lambda: len(run.ran) == 5)
    assert run.most == 2
    q.stop(timeout=5)
