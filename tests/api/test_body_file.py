"""The shared upload receiver: caps, declared lengths, in-place writes, and no symlink followed."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest
from starlette.requests import Request
from starlette.types import Message

from imageport.api.body_file import receive_to_file


class TooLarge(Exception):
    pass


class WrongLength(Exception):
    pass


def request(*chunks: bytes) -> Request:
    messages = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]

    async def receive() -> Message:
        return messages.pop(0)

    return Request({"type": "http", "method": "PUT", "headers": []}, receive)


def receive(req: Request, path: Path, **kwargs: object) -> int:
    options: dict[str, object] = {
        "limit": 100,
        "expected": None,
        "too_large": TooLarge,
        "wrong_length": lambda size: WrongLength(size),
    }
    options.update(kwargs)
    return asyncio.run(receive_to_file(req, path, **options))  # type: ignore[arg-type]


def test_body_written_hashed_and_private(tmp_path: Path) -> None:
    target = tmp_path / "body"
    md5 = hashlib.md5()  # noqa: S324 - compared, not trusted
    sha = hashlib.sha256()
    size = receive(
        request(b"abc", b"", b"def"), target, expected=6, hashers=[sha], side_hashers=[md5]
    )
    assert size == 6
    assert target.read_bytes() == b"abcdef"
    assert target.stat().st_mode & 0o777 == 0o600
    assert md5.hexdigest() == hashlib.md5(b"abcdef").hexdigest()  # noqa: S324
    assert sha.hexdigest() == hashlib.sha256(b"abcdef").hexdigest()


@pytest.mark.parametrize(
    ("chunks", "kwargs", "error"),
    [
        ((b"x" * 60, b"x" * 60), {}, TooLarge),
        ((b"x",), {"expected": 101}, TooLarge),
        ((b"abc",), {"expected": 4}, WrongLength),
        ((b"abc", b"de"), {"expected": 4}, WrongLength),
    ],
)
def test_refused_body_leaves_no_file(
    tmp_path: Path, chunks: tuple[bytes, ...], kwargs: dict[str, object], error: type
) -> None:
    target = tmp_path / "body"
    with pytest.raises(error):
        receive(request(*chunks), target, **kwargs)
    assert not target.exists()


def test_failed_check_removes_the_file(tmp_path: Path) -> None:
    target = tmp_path / "body"

    def check() -> None:
        raise WrongLength("refused")

    with pytest.raises(WrongLength):
        receive(request(b"abc"), target, check=check)
    assert not target.exists()


def test_in_place_write_keeps_the_rest(tmp_path: Path) -> None:
    target = tmp_path / "assembly"
    target.write_bytes(b"0123456789")
    assert receive(request(b"ab"), target, offset=4) == 2
    assert target.read_bytes() == b"0123ab6789"


@pytest.mark.parametrize("offset", [None, 0])
def test_symlink_target_not_followed(tmp_path: Path, offset: int | None) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    link = tmp_path / "body"
    link.symlink_to(victim)
    with pytest.raises(OSError):
        receive(request(b"evil"), link, offset=offset)
    assert victim.read_bytes() == b"keep"
