"""In-memory stand-ins for the service's ports, the test seam (httpx's ``MockTransport`` idea).

* :class:`~support.fakes.object_store.FakeObjectStore`: buckets, objects and multipart uploads in
  dictionaries (bytes in memory; only request bodies and ``local_path`` copies touch disk).
* :class:`~support.fakes.image_worker.FakeImageWorker`: answers what a file is from a script, and
  "converts" by writing a one-line fake container that it recognises again; no process runs.
* :class:`~support.fakes.server_host.FakeServerHost`: servers' machines as dictionary entries; no
  virtual machine runs.
* :class:`~support.fakes.boot_runner.FakeBootRunner`: boots nothing; each firmware's boot shows
  the console a test scripted for it.
* :class:`~support.fakes.job_queue.FakeJobQueue`: records submitted job ids and, once started, runs
  them at once in the caller's thread.

Each is held to its port by the same contract tests as the real adapter
(``tests/adapters/test_*_contract.py``), so a service test that runs on a fake tests what would
happen on the real thing. Use them where a test is about the service's own logic (states,
checks, failures, quotas); the adapters' own tests cover files, processes and threads.
"""

from __future__ import annotations

from support.fakes.boot_runner import FakeBootRunner
from support.fakes.image_worker import GOOD_DEBIAN, FakeImageWorker, fake_container
from support.fakes.job_queue import FakeJobQueue
from support.fakes.object_store import FakeObjectStore
from support.fakes.server_host import FakeServerHost

__all__ = [
    "GOOD_DEBIAN",
    "FakeBootRunner",
    "FakeImageWorker",
    "FakeJobQueue",
    "FakeObjectStore",
    "FakeServerHost",
    "fake_container",
]
