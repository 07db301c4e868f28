"""``imageport optimize`` killed with SIGKILL while the appliance runs leaves nothing running,
and the next run removes its work folder (one appliance launch, killed early)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imageport.service.tools.optimize import WORK_PREFIX, sweep_stale_work
from support.rhel_guest import rocky9

pytestmark = pytest.mark.skipif(
    shutil.which("guestfish") is None,
    reason="guestfish (libguestfs-tools) is needed: scripts/install --test",
)


def _processes_naming(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{proc.name}: {cmdline[:200]}")
    return found


def _appliance_running(text: str) -> bool:
    return any("qemu-system" in p for p in _processes_naming(text))


def test_a_killed_optimize_leaves_no_appliance_and_its_work_folder_is_swept(
    tmp_path: Path,
) -> None:
    out = tmp_path / "fixed.raw"
    proc = subprocess.Popen(
        [sys.executable, "-m", "imageport.cli.main", "optimize", str(rocky9()), str(out)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if "in the appliance" in line:
            break
    else:
        pytest.fail(f"optimize ended before editing (exit {proc.wait()})")
    (work,) = [p for p in tmp_path.iterdir() if p.name.startswith(WORK_PREFIX)]
    deadline = time.monotonic() + 180
    while not _appliance_running(str(work)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _appliance_running(str(work)), "the appliance never started"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    deadline = time.monotonic() + 60
    while _processes_naming(str(work)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _processes_naming(str(work)) == [], "guestfish or its appliance outlived optimize"
    assert not out.exists()
    assert work.exists()
    assert sweep_stale_work(tmp_path) == [work]
    assert not work.exists()
    live = tmp_path / f"{WORK_PREFIX}{os.getpid()}-abc"
    live.mkdir()
    assert sweep_stale_work(tmp_path) == [] and live.exists()
