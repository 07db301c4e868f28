"""The ``ImageWorker`` port's contract, held against the real worker (qemu-img and the checker
in limited processes) and the fake the service tests use: what inspect and probe answer, that
a conversion or export is probed back as the format asked for with the source's virtual size,
which formats are refused, and cancellation. (The real worker's bytes, limits and safety are
tested in test_image_worker.py and tests/worker/.)"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import pytest

from imageport.adapters.image_worker import SubprocessImageWorker
from imageport.rules.base import CheckOptions
from imageport.service.ports import DiskCopy, ImageWorker, WorkerCancelledError, WorkerError
from imageport.settings import load_settings
from support import builders
from support.fakes import FakeImageWorker
from support.fakes.image_worker import GOOD_DEBIAN

#: What the fake is told the source is (what the real checker finds in the pattern qcow2).
PATTERN = dataclasses.replace(GOOD_DEBIAN, virtual_size=builders.PATTERN_SIZE, os=None)


def _never() -> bool:
    return False


@pytest.fixture(params=["qemu-img", "fake"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def worker(kind: str, tmp_path: Path) -> ImageWorker:
    if kind == "fake":
        return FakeImageWorker(PATTERN)
    return SubprocessImageWorker(load_settings({}, data_dir=tmp_path / "d"))


@pytest.fixture
def slow_worker(kind: str, tmp_path: Path) -> ImageWorker:
    """A worker whose conversions take seconds (qemu-img reads at 10 KiB/s)."""
    if kind == "fake":
        return FakeImageWorker(PATTERN)
    settings = load_settings({}, data_dir=tmp_path / "d")
    return SubprocessImageWorker(settings, rate_limit=10 << 10)


@pytest.fixture
def source() -> Path:
    """The pattern disk as qcow2."""
    return builders.converted("qcow2")


def test_probe_answers_the_container_and_no_report(worker: ImageWorker, source: Path) -> None:
    found = worker.probe(source, cancelled=_never)
    assert (found.format, found.virtual_size, found.readable, found.report) == (
        "qcow2",
        builders.PATTERN_SIZE,
        True,
        None,
    )
    assert found.file_size == source.stat().st_size


def test_inspect_answers_a_report(worker: ImageWorker, source: Path) -> None:
    found = worker.inspect(source, CheckOptions(), cancelled=_never)
    assert (found.format, found.virtual_size) == ("qcow2", builders.PATTERN_SIZE)
    assert found.report is not None
    assert found.report["summary"]["verdict"] in ("pass", "fail")
    assert isinstance(found.report["findings"], list)
    assert all(isinstance(rule, str) for rule, _ in found.failures)


def test_a_file_that_cannot_be_read_is_a_worker_error(worker: ImageWorker, tmp_path: Path) -> None:
    with pytest.raises(WorkerError):
        worker.probe(tmp_path / "missing.qcow2", cancelled=_never)


@pytest.mark.parametrize("fmt", ["qcow2", "raw"])
def test_a_conversion_is_probed_back_as_asked(
    worker: ImageWorker, source: Path, tmp_path: Path, fmt: str
) -> None:
    target = tmp_path / f"out.{fmt}"
    seen: list[float] = []
    worker.convert(source, "qcow2", target, fmt, progress=seen.append, cancelled=_never)
    assert seen[-1] == 100.0 and seen == sorted(seen)
    found = worker.probe(target, cancelled=_never)
    assert (found.format, found.virtual_size, found.readable) == (fmt, builders.PATTERN_SIZE, True)


@pytest.mark.parametrize("fmt", ["qcow2", "raw", "vhd", "vmdk", "zvhd", "zvhd2"])
def test_an_export_is_probed_back_as_asked(
    worker: ImageWorker, source: Path, tmp_path: Path, fmt: str
) -> None:
    target = tmp_path / f"out.{fmt}"
    seen: list[float] = []
    worker.export(source, "qcow2", target, fmt, progress=seen.append, cancelled=_never)
    assert seen[-1] == 100.0
    found = worker.probe(target, cancelled=_never)
    assert (found.format, found.virtual_size, found.readable) == (fmt, builders.PATTERN_SIZE, True)


def test_formats_it_does_not_write_or_read_are_refused(
    worker: ImageWorker, source: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    with pytest.raises(WorkerError, match="cannot store images as 'vmdk'"):
        worker.convert(source, "qcow2", out, "vmdk", progress=lambda p: None, cancelled=_never)
    with pytest.raises(WorkerError, match="cannot export images as 'vdi'"):
        worker.export(source, "qcow2", out, "vdi", progress=lambda p: None, cancelled=_never)
    with pytest.raises(WorkerError, match="no converter reads the 'iso' format"):
        worker.convert(source, "iso", out, "raw", progress=lambda p: None, cancelled=_never)


def test_disk_needed_covers_the_output(worker: ImageWorker) -> None:
    for fmt in ("qcow2", "raw", "vmdk", "zvhd2"):
        assert worker.disk_needed(fmt, 1 << 20) >= 1 << 20


def test_a_cancelled_conversion_raises_cancelled(
    slow_worker: ImageWorker, source: Path, tmp_path: Path
) -> None:
    stop = threading.Event()
    stop.set()  # cancelled from the start; a real worker is stopped at its first look
    with pytest.raises(WorkerCancelledError):
        slow_worker.convert(
            source,
            "qcow2",
            tmp_path / "o.qcow2",
            "qcow2",
            progress=lambda p: None,
            cancelled=stop.is_set,
        )


@pytest.mark.parametrize("fmt", ["qcow2", "raw"])
def test_a_flattened_disk_copy_is_probed_back_as_asked(
    worker: ImageWorker, source: Path, tmp_path: Path, fmt: str
) -> None:
    top = tmp_path / "top.qcow2"
    builders.qemu_img(
        "create", "-q", "-f", "qcow2", "-b", str(source), "-F", "qcow2", str(top), "1G"
    )
    copy = DiskCopy(top=top, base=source, base_format="qcow2", virtual_size=1 << 30)
    bound = worker.flattened_size(copy, fmt, cancelled=_never)
    target = tmp_path / f"out.{fmt}"
    seen: list[float] = []
    worker.flatten(
        copy, target, fmt, progress=seen.append, cancelled=_never, max_output_bytes=bound
    )
    assert seen[-1] == 100.0
    found = worker.probe(target, cancelled=_never)
    assert (found.format, found.virtual_size, found.readable) == (fmt, 1 << 30, True)
    with pytest.raises(WorkerError, match="cannot store images as 'vmdk'"):
        worker.flatten(copy, tmp_path / "o", "vmdk", progress=lambda p: None, cancelled=_never)
