"""The qemu-img runner: every readable format converts to the same disk qemu sees, a backing
file named in the image is never opened, zvhd/zvhd2 go through our own reader, progress and
cancellation work, and the output re-probe answers from a worker process."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from imageport.adapters.image_worker import QEMU_DRIVERS, SubprocessImageWorker, source_spec
from imageport.rules.base import CheckOptions
from imageport.service.ports import WorkerCancelledError, WorkerError
from imageport.settings import load_settings
from support import builders, zvhd_writer

MiB = 1 << 20


def _converter(tmp_path: Path, **settings: object) -> SubprocessImageWorker:
    return SubprocessImageWorker(load_settings({}, data_dir=tmp_path / "d", **settings))


def _never() -> bool:
    return False


@pytest.mark.parametrize("fmt", ["qcow2", "vmdk", "vhd", "vhdx", "vdi", "qed", "qcow"])
def test_each_format_converts_to_the_disk_qemu_reads(tmp_path: Path, fmt: str) -> None:
    source = builders.converted(QEMU_DRIVERS[fmt])
    target = tmp_path / "out.qcow2"
    seen: list[float] = []
    _converter(tmp_path).convert(
        source, fmt, target, "qcow2", progress=seen.append, cancelled=_never
    )
    out = builders.reference_raw(target, "qcow2").read_bytes()
    assert out == builders.reference_raw(source, QEMU_DRIVERS[fmt]).read_bytes()
    assert seen[-1] == 100.0 and seen == sorted(seen)


def test_a_backing_file_named_in_the_image_is_never_opened(tmp_path: Path) -> None:
    base = tmp_path / "base.raw"
    base.write_bytes(b"\xab" * MiB)
    top = tmp_path / "top.qcow2"
    builders.qemu_img("create", "-q", "-f", "qcow2", "-b", str(base), "-F", "raw", str(top), "1M")
    out = tmp_path / "out.raw"
    _converter(tmp_path).convert(
        top, "qcow2", out, "raw", progress=lambda p: None, cancelled=_never
    )
    assert out.read_bytes() == bytes(MiB)  # qemu-img alone would have copied the 0xab bytes
    assert '"backing":null' in source_spec(top, "qcow2")


@pytest.mark.parametrize("fmt", ["zvhd", "zvhd2"])
def test_zvhd_formats_convert_through_our_reader(tmp_path: Path, fmt: str) -> None:
    image = tmp_path / f"pattern.{fmt}"
    writer = zvhd_writer.write_zvhd if fmt == "zvhd" else zvhd_writer.write_zvhd2
    writer(builders.pattern_raw(), image)
    target = tmp_path / "out.qcow2"
    seen: list[float] = []
    _converter(tmp_path).convert(
        image, fmt, target, "qcow2", progress=seen.append, cancelled=_never
    )
    assert (
        builders.reference_raw(target, "qcow2").read_bytes() == builders.pattern_raw().read_bytes()
    )
    assert seen[-1] == 100.0
    # the intermediate raw file is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "out.qcow2",
        "out.qcow2.ref.raw",
        image.name,
    ]


def test_cancel_kills_the_conversion(tmp_path: Path) -> None:
    converter = SubprocessImageWorker(
        load_settings({}, data_dir=tmp_path / "d"), rate_limit=10 << 10
    )
    stop = threading.Event()
    timer = threading.Timer(1.0, stop.set)
    timer.start()
    started = time.monotonic()
    with pytest.raises(WorkerCancelledError):
        converter.convert(
            builders.converted("qcow2"),
            "qcow2",
            tmp_path / "o.qcow2",
            "qcow2",
            progress=lambda p: None,
            cancelled=stop.is_set,
        )
    assert time.monotonic() - started < 5


def test_qemu_img_out_of_memory_is_named(tmp_path: Path) -> None:
    with pytest.raises(WorkerError, match="memory limit of 8 MiB"):
        _converter(tmp_path, worker_memory_bytes=8 * MiB).convert(
            builders.converted("qcow2"),
            "qcow2",
            tmp_path / "o.qcow2",
            "qcow2",
            progress=lambda p: None,
            cancelled=_never,
        )


def test_probe_and_inspect_answer_from_a_worker(tmp_path: Path) -> None:
    converter = _converter(tmp_path)
    found = converter.probe(builders.converted("qcow2"), cancelled=_never)
    assert (found.format, found.virtual_size, found.readable, found.report) == (
        "qcow2",
        builders.PATTERN_SIZE,
        True,
        None,
    )
    checked = converter.inspect(
        builders.converted("vmdk"), CheckOptions(min_disk_gib=40), cancelled=_never
    )
    assert checked.format == "vmdk" and checked.report is not None
    assert "IMG-SYSTEM-DISK" in {rule for rule, _ in checked.failures}


def test_unsupported_target_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(WorkerError, match="cannot store images as 'vmdk'"):
        _converter(tmp_path).convert(
            builders.converted("qcow2"),
            "qcow2",
            tmp_path / "o",
            "vmdk",
            progress=lambda p: None,
            cancelled=_never,
        )
