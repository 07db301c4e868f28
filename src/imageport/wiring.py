"""The one place the service's adapters are chosen from the settings.

:func:`build_services` opens the database (migrating it), and builds the object store, the
image worker, the job queue, the server host, the boot runner (QEMU, for boot tests) and the
guest editor (libguestfs' appliance, for automatic configuration; it runs on the accelerator
the servers use). Today there is one implementation of each port: files on local disk plus the
database, qemu-img in limited subprocesses, a thread pool in this process, QEMU virtual
machines on this machine and guestfish. A remote object store or remote workers would be
picked here, from new settings, without touching ``service/`` or ``api/``.
"""

from __future__ import annotations

import logging
import time

from imageport import logs
from imageport.adapters.db.engine import open_database
from imageport.adapters.guestfs.editor import GuestfishEditor
from imageport.adapters.image_worker import SubprocessImageWorker
from imageport.adapters.job_queue import ThreadJobQueue
from imageport.adapters.objectstore.local import LocalObjectStore
from imageport.adapters.qemu.boot_runner import QemuBootRunner
from imageport.adapters.qemu.server_host import QemuServerHost
from imageport.service.context import Services
from imageport.service.jobs.dispatch import run_job
from imageport.service.quotas import project_of
from imageport.service.servers.lifecycle import machine_stopped
from imageport.settings import Settings

log = logging.getLogger("imageport.jobs")


def build_services(settings: Settings) -> Services:
    """Services for ``settings``, with a job queue (not started: the caller runs recovery
    first, then starts it). Every line logged while a job runs carries its ``job_id``.

    The server host reports a machine that ends by itself (the guest powered off, QEMU died)
    by calling ``on_stopped(server_id)``: the service's :func:`machine_stopped`, which turns the
    server SHUTOFF."""
    db = open_database(settings.db_url)
    services = Services(
        settings,
        db,
        LocalObjectStore(settings, db),
        SubprocessImageWorker(settings),
        boot=QemuBootRunner(accelerator=settings.server_accelerator),
        editor=GuestfishEditor(accelerator=settings.server_accelerator),
    )

    def run(job_id: str) -> None:
        started = time.monotonic()
        with logs.bound(job_id=job_id):
            log.info("job started")
            try:
                run_job(services, job_id)
            finally:
                log.info("job ended after %.1f s", time.monotonic() - started)

    host = QemuServerHost(
        settings, on_stopped=lambda server_id: machine_stopped(services, server_id)
    )
    services.host = host
    services.queue = ThreadJobQueue(
        settings.workers,
        run,
        owner_of=lambda job_id: project_of(services, job_id),
        per_owner=settings.project_running_jobs,
    )
    return services
