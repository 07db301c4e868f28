"""``imageport job show|wait|cancel``, and the job progress line and wait the other commands
use.

A job's progress is polled (``GET /v1/{project_id}/jobs/{job_id}`` through
:class:`~imageport.client.ims.ImsClient`) and drawn as one line (:func:`job_line`); the final
job decides the exit status (1 when it failed). ``cancel`` asks the service to stop a job
(``POST /v1/cloudimages/job/{job_id}/cancel``, ours, not the vendor's): one not yet started
ends at once (``FAIL`` with ``IMG.CANCELLED``, its image ``killed``), a running one at its
worker's next step; a job that has ended is refused (``IMG.STATE``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from imageport.cli.client_setup import (
    EXIT_ERROR,
    EXIT_FAILED,
    EXIT_OK,
    err,
    guarded,
    ims_client,
    print_json,
)
from imageport.cli.report_commands import print_report, stored_report
from imageport.reports.terminal import terminal_safe
from imageport.service.statuses import ENDED_JOB, JobStatus

if TYPE_CHECKING:
    from imageport.client.ims import ImsClient


def _entities(job: Mapping[str, Any]) -> Mapping[str, Any]:
    ent = job.get("entities")
    return ent if isinstance(ent, dict) else {}


def _percent(job: Mapping[str, Any]) -> float:
    """The job's progress 0..100 (``entities.process_percent`` is 0..1)."""
    raw = _entities(job).get("process_percent", job.get("process_percent"))
    try:
        value = float(raw) if raw is not None else 0.0
    except (TypeError, ValueError):
        return 0.0
    return max(0.0, min(100.0, value * 100.0 if value <= 1.0 else value))


def job_line(job: Mapping[str, Any]) -> str:
    """``job ID: RUNNING convert 45%`` — the progress line ``job wait`` draws (the server's
    text shown escaped, as everything these commands print from it: :func:`terminal_safe`)."""
    phase = _entities(job).get("current_task") or job.get("phase") or "-"
    return terminal_safe(
        f"job {job.get('job_id', '')}: {job.get('status', '?')} {phase} {_percent(job):.0f}%"
    )


def _report_final(job: Mapping[str, Any], as_json: bool, announce: bool = True) -> int:
    status = job.get("status")
    if as_json and announce:
        print_json(job)
    if status == JobStatus.FAIL:
        err(f"job {job.get('job_id', '')} failed: {job.get('error_code') or '?'}")
        reason = str(job.get("fail_reason") or "")
        for line in reason.split("\n") if reason else ():
            sys.stderr.write(f"  {terminal_safe(line)}\n")
        return EXIT_FAILED
    if not as_json and announce:
        image_id = _entities(job).get("image_id")
        done = f"job {job.get('job_id', '')} {status}" + (f": image {image_id}" if image_id else "")
        print(terminal_safe(done + _written(job)))
    return EXIT_OK


def _written(job: Mapping[str, Any]) -> str:
    """``, wrote BUCKET:KEY (N bytes)`` for an export job that succeeded (its entities name
    the object: ``bucket_url``, ``object_size``), else nothing."""
    ent = _entities(job)
    url = ent.get("bucket_url")
    if job.get("status") != JobStatus.SUCCESS or not isinstance(url, str):
        return ""
    size = ent.get("object_size")
    return f", wrote {url}" + (f" ({size} bytes)" if isinstance(size, int) else "")


def wait_for(
    ims: ImsClient,
    job_id: str,
    timeout: float,
    interval: float,
    as_json: bool,
    *,
    announce: bool = True,
) -> int:
    """Poll the job every ``interval`` seconds, drawing its progress line on stderr, until it
    ends (its exit status) or ``timeout`` passes (2). The ended job is printed (``announce``
    False: only a failure, on stderr; the caller prints what the job made)."""
    tty = sys.stderr.isatty()
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        job = ims.job_progress(job_id)
        line = job_line(job)
        if line != last:
            sys.stderr.write(f"\r{line}\x1b[K" if tty else line + "\n")
            sys.stderr.flush()
            last = line
        if job.get("status") in ENDED_JOB:
            if tty:
                sys.stderr.write("\n")
            return _report_final(ims.show_job(job_id), as_json, announce)
        if time.monotonic() >= deadline:
            if tty:
                sys.stderr.write("\n")
            err(f"timed out after {timeout:g} s; job {job_id} is still {job.get('status', '?')}")
            return EXIT_ERROR
        time.sleep(max(0.05, min(interval, deadline - time.monotonic())))


@guarded
def job_show(args: argparse.Namespace) -> int:
    with ims_client(args) as ims:
        job = ims.show_job(args.id)
        report = None if args.json else stored_report(lambda: ims.job_report(args.id))
    if args.json:
        print_json(job)
    else:
        print(job_line(job))
        for name in ("job_type", "begin_time", "end_time", "error_code", "fail_reason"):
            if job.get(name):
                print(f"{name}: {terminal_safe(str(job[name]), lines=True)}")
        for name, value in sorted(_entities(job).items()):
            if value is not None:
                print(terminal_safe(f"entities.{name}: {value}"))
        print_report(report)
    return EXIT_FAILED if job.get("status") == JobStatus.FAIL else EXIT_OK


@guarded
def job_wait(args: argparse.Namespace) -> int:
    with ims_client(args) as ims:
        return wait_for(ims, args.id, args.timeout, args.interval, args.json)


@guarded
def job_cancel(args: argparse.Namespace) -> int:
    with ims_client(args) as ims:
        job = ims.cancel_job(args.id)
    if args.json:
        print_json(job)
    elif job.get("status") == JobStatus.FAIL:
        print(f"job {args.id} cancelled: {job.get('error_code') or '?'}")
    else:
        print(
            f"job {args.id} is {job.get('status', '?')}: cancel requested; it stops at its "
            "next step (imageport job wait shows when)"
        )
    return EXIT_OK
