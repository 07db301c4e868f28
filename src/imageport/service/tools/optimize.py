"""``imageport optimize``: fix an image file offline, say exactly what changed, check the result.

1. check the input (the report a user sees before), refuse it when it is not safe to read or
   holds no installed system;
2. plan the fixes from the guest as the checker reads it (:mod:`imageport.configure`); a dry
   run stops here and shows the plan;
3. copy the input's disk to a sparse raw work file beside the output (imageport's own readers:
   the input is never written);
4. apply the plan to the work file in the editing appliance (the :class:`GuestEditor` port);
5. write the output in the asked format and check it (the report a user sees after).

The output appears only when complete; the work file is removed whatever happens.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

from imageport.configure.plan import Plan, plan_configuration
from imageport.errors import ImageportError
from imageport.rules.base import CheckOptions
from imageport.service.ports import EditRun, GuestEditor, Qcow2Writer
from imageport.service.tools.check import CheckReport, check_image, check_source
from imageport.service.tools.convert import (
    ConvertOptions,
    OutputFormat,
    convert_image,
    refuse_same_file,
)
from imageport.service.tools.to_raw import ImageRefusedError, Progress, convert_to_raw
from imageport.source import FileSource

#: The rules whose errors mean the file is not safe (or not possible) to read and configure.
_UNREADABLE_RULES = frozenset({"IMG-FORMAT", "IMG-SAFE", "IMG-QCOW2-ENCRYPTED"})


class NothingToConfigureError(ImageportError):
    """The image holds no installed system that automatic configuration could fix."""


@dataclass(frozen=True, slots=True)
class OptimizeOptions:
    #: the rules whose fixes run (None: all)
    only: Collection[str] | None = None
    dry_run: bool = False
    check: CheckOptions = field(default_factory=CheckOptions)


@dataclass(frozen=True, slots=True)
class Optimized:
    """What ``optimize`` found, planned and did."""

    before: CheckReport
    plan: Plan
    #: the check of the output (None for a dry run)
    after: CheckReport | None = None
    edit: EditRun | None = None
    #: seconds per phase: check, plan, copy, edit, write, check-after
    seconds: dict[str, float] = field(default_factory=dict)


#: The work folders beside the output: ``.imageport-optimize-<pid>-<random>``.
WORK_PREFIX = ".imageport-optimize-"
_WORK_NAME = re.compile(re.escape(WORK_PREFIX) + r"(\d{1,10})-[A-Za-z0-9_]{1,32}")


def sweep_stale_work(folder: Path) -> list[Path]:
    """Remove the work folders in ``folder`` left by an ``optimize`` that was killed (its
    process no longer exists); returns them. A live run's folder is left alone."""
    removed = []
    for entry in folder.iterdir():
        found = _WORK_NAME.fullmatch(entry.name)
        if found is None or not entry.is_dir() or entry.is_symlink():
            continue
        try:
            os.kill(int(found.group(1)), 0)
            continue  # that process is alive (or is another user's)
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def plan_for(src: str | os.PathLike[str], options: OptimizeOptions) -> tuple[CheckReport, Plan]:
    """Check ``src`` and plan its configuration; raises when it cannot be configured."""
    with FileSource(src) as source:
        before = check_source(src, source, options.check)
        unreadable = {
            f.rule_id for f in before.findings if f.severity.value == "error"
        } & _UNREADABLE_RULES
        if unreadable or before.guest is None:
            raise ImageRefusedError(before)
        if before.guest.layout.root is None:
            raise NothingToConfigureError(
                f"{os.fspath(src)} holds no installed Linux system to configure (IMG-SYSTEM-DISK)"
            )
        plan = plan_configuration(before.guest, options.only, when=_now())
    return before, plan


def optimize_image(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str] | None,
    fmt: OutputFormat,
    options: OptimizeOptions,
    *,
    editor: GuestEditor,
    qcow2: Qcow2Writer | None = None,
    progress: Progress | None = None,
    phase: Callable[[str], None] | None = None,
) -> Optimized:
    """Configure ``src`` into ``dst`` (``fmt``); with ``options.dry_run`` only plan.
    ``phase`` is told each phase as it starts (for a user watching a minute of work)."""
    say = phase or (lambda _: None)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    if dst is not None:
        refuse_same_file(src, dst)
    say("checking and planning")
    before, plan = plan_for(src, options)
    seconds["check+plan"] = time.perf_counter() - started
    if options.dry_run or dst is None:
        return Optimized(before, plan, seconds=seconds)
    if plan.operations:
        editor.ready()
    out_dir = Path(os.fspath(dst)).resolve().parent
    sweep_stale_work(out_dir)
    prefix = f"{WORK_PREFIX}{os.getpid()}-"
    with tempfile.TemporaryDirectory(prefix=prefix, dir=out_dir) as tmp:
        work = Path(tmp) / "work.raw"
        mark = time.perf_counter()
        say("copying the disk to a work file")
        convert_to_raw(src, work, progress)
        seconds["copy"] = time.perf_counter() - mark
        edit = None
        if plan.operations:
            mark = time.perf_counter()
            say(f"editing {len(plan.operations)} file(s) in the appliance")
            edit = editor.apply(work, plan.mounts, plan.operations)
            seconds["edit"] = time.perf_counter() - mark
        mark = time.perf_counter()
        say(f"writing {fmt}")
        if fmt == "raw":
            os.replace(work, dst)
        else:
            convert_image(work, dst, fmt, ConvertOptions(), progress, qcow2=qcow2)
        seconds["write"] = time.perf_counter() - mark
    mark = time.perf_counter()
    say("checking the result")
    after = check_image(dst, options.check)
    seconds["check-after"] = time.perf_counter() - mark
    return Optimized(before, plan, after, edit, seconds)
