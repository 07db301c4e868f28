"""Worker processes: each limit stops a hostile worker and is named in the error; cancellation
and the wall clock kill the whole process group; the inspect worker prints one document."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from imageport.adapters.image_worker import disk_usage, output_watch
from imageport.service.ports import WorkerCancelledError, WorkerError
from imageport.settings import load_settings
from imageport.worker.document import SCHEMA, inspection_from_document
from imageport.worker.sandbox import WorkerLimits, python_command, run_limited
from support import guest_fixtures as gf

MiB = 1 << 20
ROOMY = WorkerLimits(memory_bytes=1 << 30, cpu_seconds=60, file_bytes=1 << 30, wall_seconds=60)


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_cpu_limit_stops_a_busy_loop() -> None:
    limits = WorkerLimits(1 << 30, cpu_seconds=1, file_bytes=1 << 30, wall_seconds=30)
    with pytest.raises(WorkerError, match="exceeded its CPU time limit of 1 s") as err:
        run_limited(_python("while True: pass"), limits)
    assert err.value.limit == "cpu"  # the import job turns this into an IMG-SAFE finding


def test_the_checker_limits_are_tight() -> None:
    settings = load_settings({})
    check = WorkerLimits.for_check(settings)
    assert check.cpu_seconds == 20 and check.wall_seconds == 90
    assert check.file_bytes <= MiB and check.memory_bytes == settings.worker_memory_bytes
    assert WorkerLimits.from_settings(settings).cpu_seconds == 3600


def test_a_watch_stops_a_conversion_that_outgrows_its_bound(tmp_path: Path) -> None:
    """Issue 9, finding 2: a conversion's output may not take more disk than the bound the
    check's measurements give; the watch counts allocated blocks, not apparent size."""
    out = tmp_path / "out.raw"
    sparse = f"f = open({str(out)!r}, 'wb'); f.truncate(512 << 20); f.close()"
    run_limited(_python(sparse), ROOMY, watch=output_watch([out], 4 * MiB))  # holes are free
    writer = (
        f"import time; f = open({str(out)!r}, 'r+b')\n"
        "for n in range(64):\n"
        "    f.write(bytes([1]) * (1 << 20)); f.flush(); time.sleep(0.02)\n"
    )
    started = time.monotonic()
    with pytest.raises(WorkerError, match="more than the 4194304 bytes") as err:
        run_limited(_python(writer), ROOMY, watch=output_watch([out], 4 * MiB))
    assert err.value.limit == "watch" and time.monotonic() - started < 5
    assert disk_usage([out]) < 32 * MiB


def test_memory_limit_stops_an_allocation() -> None:
    limits = WorkerLimits(64 * MiB, cpu_seconds=30, file_bytes=1 << 30, wall_seconds=30)
    with pytest.raises(WorkerError, match="exceeded its memory limit of 64 MiB"):
        run_limited(_python("x = bytearray(256 << 20)"), limits)


def test_file_size_limit_stops_a_large_write(tmp_path: Path) -> None:
    limits = WorkerLimits(1 << 30, cpu_seconds=30, file_bytes=MiB, wall_seconds=30)
    code = f"open({str(tmp_path / 'big')!r}, 'wb').write(bytes(2 << 20))"
    with pytest.raises(WorkerError, match="exceeded its file size limit of 1 MiB"):
        run_limited(_python(code), limits)
    assert (tmp_path / "big").stat().st_size <= MiB


def test_wall_clock_kills_a_sleeping_hang_and_its_children() -> None:
    limits = WorkerLimits(1 << 30, cpu_seconds=30, file_bytes=1 << 30, wall_seconds=1)
    marker = f"sleep 300.{os.getpid()}"  # a command line no other process has
    started = time.monotonic()
    with pytest.raises(WorkerError, match="wall-clock limit of 1 s"):
        run_limited(["sh", "-c", f"{marker} & {marker}"], limits)
    assert time.monotonic() - started < 5
    time.sleep(0.2)
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    assert marker not in ps.stdout


def test_cancel_stops_the_worker_promptly() -> None:
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    with pytest.raises(WorkerCancelledError):
        run_limited(["sleep", "300"], ROOMY, cancelled=stop.is_set)
    assert time.monotonic() - started < 3


def test_worker_runs_in_its_own_session_without_core_dumps() -> None:
    code = (
        "import os, resource; print(os.getsid(0) == os.getpid(), "
        "resource.getrlimit(resource.RLIMIT_CORE), resource.getrlimit(resource.RLIMIT_AS))"
    )
    out = run_limited(_python(code), ROOMY).stdout.decode()
    assert out.split() == ["True", "(0,", "0)", f"({1 << 30},", f"{1 << 30})"]


def test_stdout_is_capped() -> None:
    with pytest.raises(WorkerError, match="printed more than 1 MiB"):
        run_limited(_python("import sys; sys.stdout.write('x' * (4 << 20))"), ROOMY, stdout_cap=MiB)


def test_a_failing_worker_explains_itself() -> None:
    with pytest.raises(WorkerError, match="failed with exit status 3: boom"):
        run_limited(_python("import sys; sys.stderr.write('boom\\n'); sys.exit(3)"), ROOMY)


def test_inspect_worker_prints_one_document_with_the_job_facts() -> None:
    out = run_limited(
        python_command(
            "imageport.worker.inspect_image",
            str(gf.synthetic_guest()),
            "--options",
            json.dumps({"min_disk_gib": 40}),
        ),
        ROOMY,
    )
    doc = json.loads(out.stdout)
    assert doc["schema"] == SCHEMA
    found = inspection_from_document(doc)
    assert (found.format, found.virtual_size, found.readable) == ("raw", 128 * MiB, True)
    assert found.os is not None and (found.os.id, found.os.version_id) == ("debian", "12")
    assert found.boot_modes == ("bios", "uefi")
    assert found.failures == ()
    assert found.report is not None and found.report["summary"]["verdict"] == "pass"


def test_a_forged_worker_document_is_refused() -> None:
    with pytest.raises(WorkerError, match="invalid document"):
        inspection_from_document({"schema": SCHEMA, "facts": {"format": 1}})
    with pytest.raises(WorkerError, match="invalid document"):
        inspection_from_document(["not", "a", "document"])


def test_workers_die_with_a_killed_server() -> None:
    marker = f"sleep 301.{os.getpid()}"
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "from imageport.worker.sandbox import WorkerLimits, run_limited\n"
                f"run_limited({marker.split()!r}, WorkerLimits(1 << 30, 60, 1 << 30, 60))"
            ),
        ]
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
        if marker in ps.stdout:
            break
        time.sleep(0.05)
    assert marker in ps.stdout
    server.kill()  # kill -9: no cleanup code runs in the server
    server.wait()
    time.sleep(0.3)
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    assert marker not in ps.stdout
