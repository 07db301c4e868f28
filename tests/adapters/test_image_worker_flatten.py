"""Flattening a copy of a server's disk (the real worker: our probe, then qemu-img measure and
convert in limited processes): the result is the overlay over the stored image, standalone;
the backing file named inside the overlay is never opened (the service names the base); an
overlay that is not a plain qcow2 overlay is refused before qemu-img reads it; the measured
bound covers what is written."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from imageport.adapters.image_worker import SubprocessImageWorker, overlay_spec
from imageport.service.ports import DiskCopy, WorkerError
from imageport.settings import load_settings
from support import builders

MiB = 1 << 20
SIZE = builders.PATTERN_SIZE


def _never() -> bool:
    return False


def _worker(tmp_path: Path) -> SubprocessImageWorker:
    return SubprocessImageWorker(load_settings({}, data_dir=tmp_path / "d"))


def _overlay(top: Path, backing: Path, backing_format: str, size: int = SIZE) -> None:
    builders.qemu_img(
        "create", "-q", "-f", "qcow2", "-b", str(backing), "-F", backing_format, str(top), str(size)
    )


def _write(top: Path, offset: int, length: int, byte: int) -> None:
    subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", f"write -P {byte} {offset} {length}", str(top)],
        check=True,
        capture_output=True,
    )


def _disk(image: Path, fmt: str) -> bytes:
    """What a guest reads from ``image`` (qemu's own reading of the file and its backing)."""
    return builders.reference_raw(image, fmt).read_bytes()


@pytest.mark.parametrize(("base_format", "target_format"), [("qcow2", "qcow2"), ("raw", "raw")])
def test_the_flattened_image_is_the_overlay_over_its_base_standalone(
    tmp_path: Path, base_format: str, target_format: str
) -> None:
    base = builders.converted("qcow2") if base_format == "qcow2" else builders.pattern_raw()
    top = tmp_path / "top.qcow2"
    _overlay(top, base, base_format)
    _write(top, 0, MiB, 0x41)  # over the base's data
    _write(top, SIZE - 2 * MiB, MiB, 0x42)
    copy = DiskCopy(top=top, base=base, base_format=base_format, virtual_size=SIZE)
    worker = _worker(tmp_path)
    bound = worker.flattened_size(copy, target_format, cancelled=_never)
    out = tmp_path / f"out.{target_format}"
    seen: list[float] = []
    worker.flatten(
        copy, out, target_format, progress=seen.append, cancelled=_never, max_output_bytes=bound
    )
    assert seen[-1] == 100.0
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", "-f", target_format, str(out)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    assert "backing-filename" not in info and info["virtual-size"] == SIZE
    flat = _disk(out, target_format)
    assert flat == _disk(top, "qcow2")
    assert flat[:MiB] == b"\x41" * MiB and flat[SIZE - 2 * MiB : SIZE - MiB] == b"\x42" * MiB
    assert out.stat().st_blocks * 512 <= bound


def test_the_backing_file_named_in_the_overlay_is_never_opened(tmp_path: Path) -> None:
    """The overlay's header names a decoy; the service names the real base: the result is the
    real base's data (qemu-img on the overlay alone would have read the decoy)."""
    base = tmp_path / "base.raw"
    base.write_bytes(b"\x11" * (4 * MiB))
    decoy = tmp_path / "decoy.raw"
    decoy.write_bytes(b"\xee" * (4 * MiB))
    top = tmp_path / "top.qcow2"
    _overlay(top, decoy, "raw", 4 * MiB)
    _write(top, MiB, MiB, 0x41)
    copy = DiskCopy(top=top, base=base, base_format="raw", virtual_size=4 * MiB)
    out = tmp_path / "out.raw"
    _worker(tmp_path).flatten(copy, out, "raw", progress=lambda p: None, cancelled=_never)
    assert out.read_bytes() == b"\x11" * MiB + b"\x41" * MiB + b"\x11" * (2 * MiB)
    spec = json.loads(overlay_spec(copy).removeprefix("json:"))
    assert spec["backing"]["file"]["filename"] == str(base.resolve())
    assert spec["backing"]["backing"] is None and spec["driver"] == "qcow2"


def test_an_overlay_with_an_external_data_file_is_refused(tmp_path: Path) -> None:
    """qemu opens a qcow2 file's external data file by the name inside it, whatever the block
    graph says: such a copy is refused before qemu-img reads it."""
    base = tmp_path / "base.raw"
    base.write_bytes(bytes(MiB))
    top = tmp_path / "top.qcow2"
    builders.qemu_img(
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        f"data_file={tmp_path / 'elsewhere.raw'}",
        str(top),
        "1M",
    )
    copy = DiskCopy(top=top, base=base, base_format="raw", virtual_size=MiB)
    worker = _worker(tmp_path)
    out = tmp_path / "out.qcow2"
    for call in (
        lambda: worker.flattened_size(copy, "qcow2", cancelled=_never),
        lambda: worker.flatten(copy, out, "qcow2", progress=lambda p: None, cancelled=_never),
    ):
        with pytest.raises(WorkerError, match=r"not a plain overlay: .*data"):
            call()
    assert not out.exists()


def test_a_copy_that_is_not_a_qcow2_overlay_of_its_size_is_refused(tmp_path: Path) -> None:
    base = builders.pattern_raw()
    worker = _worker(tmp_path)
    raw_top = DiskCopy(top=base, base=base, base_format="raw", virtual_size=SIZE)
    with pytest.raises(WorkerError, match="it is raw, not qcow2"):
        worker.flattened_size(raw_top, "qcow2", cancelled=_never)
    top = tmp_path / "top.qcow2"
    _overlay(top, base, "raw")
    wrong_size = DiskCopy(top=top, base=base, base_format="raw", virtual_size=2 * SIZE)
    with pytest.raises(WorkerError, match="virtual size"):
        worker.flattened_size(wrong_size, "qcow2", cancelled=_never)
    odd_base = DiskCopy(top=top, base=base, base_format="zvhd2", virtual_size=SIZE)
    with pytest.raises(WorkerError, match="cannot be on a 'zvhd2' image"):
        worker.flattened_size(odd_base, "qcow2", cancelled=_never)
    with pytest.raises(WorkerError, match="cannot store images as 'vmdk'"):
        worker.flattened_size(
            DiskCopy(top=top, base=base, base_format="raw", virtual_size=SIZE),
            "vmdk",
            cancelled=_never,
        )
