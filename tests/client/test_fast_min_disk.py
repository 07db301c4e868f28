"""``image register --source FILE`` picks a ``min_disk`` that holds the file's virtual disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from imageport.client.errors import ClientError
from imageport.client.fast import min_disk_for
from support import builders

GiB = 1 << 30


def test_a_large_sparse_raw_needs_its_virtual_size_rounded_up(tmp_path: Path) -> None:
    raw = tmp_path / "big.raw"
    with raw.open("wb") as f:
        f.write(b"\x01" * 4096)
        f.truncate(200 * GiB + 1)
    assert min_disk_for(str(raw)) == 201


def test_a_small_image_gets_the_platform_minimum(tmp_path: Path) -> None:
    small = tmp_path / "small.qcow2"
    builders.qemu_img("create", "-f", "qcow2", str(small), "3G")
    assert min_disk_for(str(small)) == 40


def test_an_unreadable_file_is_a_client_error(tmp_path: Path) -> None:
    with pytest.raises(ClientError, match="cannot read"):
        min_disk_for(str(tmp_path / "missing.raw"))
