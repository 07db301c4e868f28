"""Upload planning and the progress bar (no server needed)."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest

from imageport.client.errors import ClientError
from imageport.client.s3 import PartEntry
from imageport.client.upload import (
    MiB,
    Part,
    Progress,
    _stored_part_size,
    choose_part_size,
    multipart_etag,
    plan_parts,
    read_part,
)

GiB = 1024 * MiB


def test_part_size_is_clamped_and_raised_to_stay_within_10000_parts() -> None:
    assert choose_part_size(100 * MiB, 64 * MiB) == 64 * MiB
    assert choose_part_size(100 * MiB, 1 * MiB) == 5 * MiB  # at least 5 MiB
    big = 1024 * GiB  # 1 TiB with 5 MiB parts
    size = choose_part_size(big, 5 * MiB)
    assert size % MiB == 0 and len(plan_parts(big, size)) <= 10_000
    assert len(plan_parts(big, size - MiB)) > 10_000  # the smallest that fits
    with pytest.raises(ClientError):
        choose_part_size(10_000 * 5 * GiB + 1, 64 * MiB)


def test_10_tib_needs_bigger_parts() -> None:
    size = choose_part_size(10 * 1024 * GiB, 64 * MiB)
    assert size > 64 * MiB and len(plan_parts(10 * 1024 * GiB, size)) <= 10_000


def test_parts_cover_the_file_exactly() -> None:
    parts = plan_parts(12 * MiB + 1, 5 * MiB)
    assert parts == [Part(1, 0, 5 * MiB), Part(2, 5 * MiB, 5 * MiB), Part(3, 10 * MiB, 2 * MiB + 1)]
    assert plan_parts(0, 5 * MiB) == [Part(1, 0, 0)]


def test_stored_part_size_is_adopted_only_when_it_explains_every_stored_part() -> None:
    size = 23 * MiB
    stored = {1: PartEntry(1, 6 * MiB, "a"), 3: PartEntry(3, 6 * MiB, "b")}
    assert _stored_part_size(stored, size, 5 * MiB) == 6 * MiB
    inconsistent = {1: PartEntry(1, 6 * MiB, "a"), 4: PartEntry(4, 6 * MiB, "c")}  # 4th is 5
    assert _stored_part_size(inconsistent, size, 8 * MiB) == 8 * MiB
    assert _stored_part_size({4: PartEntry(4, 3 * MiB, "c")}, size, 8 * MiB) == 8 * MiB
    assert _stored_part_size({}, size, 8 * MiB) == 8 * MiB


def test_multipart_etag_is_s3s() -> None:
    digests = [
        hashlib.md5(b"a", usedforsecurity=False).digest(),
        hashlib.md5(b"b", usedforsecurity=False).digest(),
    ]
    joined = hashlib.md5(b"".join(digests), usedforsecurity=False).hexdigest()
    assert multipart_etag(digests) == joined + "-2"


def test_read_part_reads_exactly_its_range(tmp_path: Path) -> None:
    data = os.urandom(3 * MiB + 17)
    path = tmp_path / "f"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert bytes(read_part(fd, Part(2, MiB + 5, 2 * MiB))) == data[MiB + 5 : 3 * MiB + 5]
        with pytest.raises(ClientError, match="shorter"):
            read_part(fd, Part(9, 3 * MiB, MiB))
    finally:
        os.close(fd)


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_progress_shows_bytes_speed_and_eta_and_ignores_skipped_bytes_for_speed() -> None:
    clock = _Clock()
    out = io.StringIO()
    progress = Progress(100 * MiB, out, tty=False, clock=clock)
    progress.skip(50 * MiB)  # already on the server
    clock.t = 2.0
    progress.add(20 * MiB)  # 20 MiB in 2 s = 10.5 MB/s
    line = out.getvalue().splitlines()[-1]
    assert "70.0/100.0 MiB" in line and " 70.0%" in line
    assert "10.5 MB/s" in line
    assert "ETA 0:03" in line  # 30 MiB left at 10 MiB/s
    clock.t = 2.1
    progress.add(MiB)  # throttled: no new line within a second off a TTY
    assert len(out.getvalue().splitlines()) == 2
    progress.add(-MiB)  # a failed attempt is taken back
    progress.finish()
    assert "70.0/100.0 MiB" in out.getvalue().splitlines()[-1]


def test_progress_on_a_tty_redraws_one_line() -> None:
    out = io.StringIO()
    clock = _Clock()
    progress = Progress(10 * MiB, out, tty=True, clock=clock)
    for _ in range(10):
        clock.t += 1
        progress.add(MiB)
    progress.finish()
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    assert "\r[####################] 10.0/10.0 MiB 100.0%" in text
