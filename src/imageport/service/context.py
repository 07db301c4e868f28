"""The one object every use case receives: settings, database and the ports' implementations."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine

from imageport.service.boot_slots import BootSlots
from imageport.service.clock import utc_now
from imageport.service.ports import (
    BootRunner,
    GuestEditor,
    ImageWorker,
    JobQueue,
    ObjectStore,
    ServerHost,
)
from imageport.service.servers.console_tokens import ConsoleTokens
from imageport.settings import Settings


@dataclass(slots=True)
class Services:
    """Built once by :func:`imageport.wiring.build_services`; tests build their own."""

    settings: Settings
    db: Engine
    store: ObjectStore
    #: inspects, probes and converts images, in limited worker processes
    worker: ImageWorker
    #: set by the wiring once the queue (which needs the services to run jobs) exists
    queue: JobQueue | None = None
    #: runs servers' virtual machines; None where servers are not offered (tests of other parts)
    host: ServerHost | None = None
    clock: Callable[[], datetime] = field(default=utc_now)
    #: the console URLs' tokens, in memory (a restarted service accepts none it did not issue)
    console_tokens: ConsoleTokens = field(default_factory=ConsoleTokens)
    #: boots stored images in throw-away machines (boot tests); None where none are offered
    boot: BootRunner | None = None
    #: edits guests' files in an isolated appliance (automatic configuration, ``is_config``);
    #: None where it is not offered (registrations asking for it are refused)
    editor: GuestEditor | None = None
    #: the places for boot tests on this host (``settings.boot_test_concurrency``)
    boot_slots: BootSlots = field(init=False)

    def __post_init__(self) -> None:
        self.boot_slots = BootSlots(self.settings.boot_test_concurrency)

    def submit_job(self, job_id: str) -> None:
        """Hand a job to the queue (jobs stay INIT in the database when none is running)."""
        if self.queue is not None:
            self.queue.submit(job_id)
