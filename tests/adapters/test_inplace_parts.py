"""Multipart parts written in place into one assembly file, so that completing needs no copy;
and every case where that must not happen (or must fall back to joining the parts), on SQLite
and PostgreSQL with real files."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from imageport.adapters.objectstore.assembly import ASSEMBLY, MIN_PART_SIZE
from imageport.adapters.objectstore.frontier import HashFrontier, identity
from imageport.adapters.objectstore.local import LocalObjectStore
from imageport.service.context import Services
from imageport.service.jobs import recovery
from imageport.service.ports import PartInfo, PartTarget, StagedFile
from imageport.service.tables import parts, projects
from support import service_fixtures

STRIDE = MIN_PART_SIZE + 4096


@pytest.fixture
def services(tmp_path: Path, database_url: str) -> Iterator[Services]:
    """Services (the local store) with bucket ``bkt``, on SQLite and PostgreSQL."""
    made = service_fixtures.make_services(tmp_path / "data", database_url)
    with made.db.begin() as conn:
        conn.execute(projects.insert().values(id="p" * 32, name="p", created_at="x"))
    made.store.create_bucket("bkt", "p" * 32, "STANDARD", "local-1")
    yield made
    made.db.dispose()


def _store(services: Services) -> LocalObjectStore:
    store = services.store
    assert isinstance(store, LocalObjectStore)
    return store


def _write(target: PartTarget, data: bytes) -> StagedFile:
    """Write a body where the store said, as the S3 API's body writer does."""
    if target.in_place:
        fd = os.open(target.path, os.O_WRONLY)
        try:
            os.pwrite(fd, data, target.offset)
            os.fdatasync(fd)
        finally:
            os.close(fd)
    else:
        target.path.write_bytes(data)
    return StagedFile(
        target.path,
        len(data),
        hashlib.md5(data).hexdigest(),  # noqa: S324
        "",
        target.offset if target.in_place else None,
    )


def _put(
    store: LocalObjectStore, upload_id: str, number: int, data: bytes
) -> tuple[bool, PartInfo]:
    target = store.part_target(upload_id, number, len(data))
    try:
        return target.in_place, store.commit_part(upload_id, number, _write(target, data))
    finally:
        store.release_part_target(target)


def _new_upload(store: LocalObjectStore) -> str:
    return store.create_upload(
        "bkt", "disk.img", content_type="", storage_class="STANDARD", metadata={}
    ).upload_id


def _read(store: LocalObjectStore) -> bytes:
    with store.open_object("bkt", "disk.img") as got:
        return got.read()


def _assembly(services: Services, upload_id: str) -> Path:
    return services.settings.uploads_dir / upload_id / ASSEMBLY


def _only_object_inode(services: Services) -> int:
    (blob,) = list(services.settings.objects_dir.iterdir())
    return blob.stat().st_ino


def test_uniform_parts_in_any_order_and_in_parallel_complete_without_copy(
    services: Services,
) -> None:
    store = _store(services)
    upload_id = _new_upload(store)
    data = [os.urandom(STRIDE) for _ in range(5)] + [os.urandom(MIN_PART_SIZE)]
    # the last part first (its size is not the stride) and part 2 (nor is it known to be
    # yet): files of their own; then the rest at once, in place
    early = [_put(store, upload_id, 6, data[5]), _put(store, upload_id, 2, data[1])]
    assert not any(in_place for in_place, _info in early)
    with ThreadPoolExecutor(4) as pool:
        placed = list(pool.map(lambda n: _put(store, upload_id, n, data[n - 1]), [1, 4, 3, 5]))
    assert all(in_place for in_place, _info in placed)
    files = sorted(p.name for p in services.settings.uploads_dir.glob("*/*"))
    assert len(files) == 3 and ASSEMBLY in files  # the assembly and the two early parts
    inode = _assembly(services, upload_id).stat().st_ino
    etags = {info.number: info.etag for _ok, info in early + placed}
    done = store.complete_upload(upload_id, [(n, etags[n]) for n in range(1, 7)])
    whole = b"".join(data)
    assert _read(store) == whole and done.size == len(whole)
    assert done.sha256 == hashlib.sha256(whole).hexdigest()
    md5s = b"".join(hashlib.md5(p).digest() for p in data)  # noqa: S324
    assert done.etag == f'"{hashlib.md5(md5s).hexdigest()}-6"'  # noqa: S324
    # the assembly became the object (the two early parts copied into their slots)
    assert _only_object_inode(services) == inode
    assert list(services.settings.uploads_dir.iterdir()) == []


def test_small_first_part_and_odd_sizes_fall_back_to_joining(services: Services) -> None:
    store = _store(services)
    upload_id = _new_upload(store)
    last = os.urandom(1000)
    small_first, _ = _put(store, upload_id, 3, last)  # may be the last part: no stride yet
    one, two = os.urandom(STRIDE + 7), os.urandom(STRIDE)
    first_large, p1 = _put(store, upload_id, 1, one)  # fixes the stride at STRIDE + 7
    fits, p2 = _put(store, upload_id, 2, two)  # fits its slot, but shorter than the stride
    bigger, _ = _put(store, upload_id, 4, os.urandom(STRIDE + 8))  # larger than the stride
    assert (small_first, first_large, fits, bigger) == (False, True, True, False)
    p3 = store.list_parts(upload_id)[2]
    done = store.complete_upload(upload_id, [(1, p1.etag), (2, p2.etag), (3, p3.etag)])
    assert _read(store) == one + two + last
    assert done.sha256 == hashlib.sha256(one + two + last).hexdigest()


def test_reuploaded_part_never_overwrites_committed_bytes(services: Services) -> None:
    store = _store(services)
    upload_id = _new_upload(store)
    one, two, new_two = (os.urandom(STRIDE) for _ in range(3))
    _put(store, upload_id, 1, one)
    _in, old2 = _put(store, upload_id, 2, two)
    # a second upload of part 2 while the first is committed goes to a file of its own...
    target = store.part_target(upload_id, 2, STRIDE)
    assert not target.in_place
    staged = _write(target, new_two)
    region = _assembly(services, upload_id).read_bytes()[STRIDE:]
    assert region == two  # ...so the committed part 2 is intact until the new one replaces it
    new2 = store.commit_part(upload_id, 2, staged)
    store.release_part_target(target)
    # once part 2 lives in its own file, its slot is free again: a third upload goes in place
    third = os.urandom(STRIDE)
    again, p2 = _put(store, upload_id, 2, third)
    assert again and p2.etag != new2.etag != old2.etag
    p1 = store.list_parts(upload_id)[0]
    inode = _assembly(services, upload_id).stat().st_ino
    done = store.complete_upload(upload_id, [(1, p1.etag), (2, p2.etag)])
    assert _read(store) == one + third and _only_object_inode(services) == inode
    # the sha256 hashed ahead while parts arrived followed every re-upload
    assert done.sha256 == hashlib.sha256(one + third).hexdigest()


def test_concurrent_uploads_of_one_part_and_complete_during_a_write(services: Services) -> None:
    store = _store(services)
    upload_id = _new_upload(store)
    one, two = os.urandom(STRIDE), os.urandom(100)
    _ok, p1 = _put(store, upload_id, 1, one)
    first = store.part_target(upload_id, 2, len(two))
    second = store.part_target(upload_id, 2, len(two))
    assert first.in_place and not second.in_place  # one writer per slot
    p2 = store.commit_part(upload_id, 2, _write(second, two))
    store.release_part_target(second)
    writing = store.part_target(upload_id, 3, 5)  # a write in flight on the upload
    assert writing.in_place
    # completing now must not hand the assembly over (part 3 is still being written): join
    store.complete_upload(upload_id, [(1, p1.etag), (2, p2.etag)])
    assert _read(store) == one + two
    store.release_part_target(first)
    store.release_part_target(writing)


def test_failed_body_is_resent_and_restart_keeps_placing_parts(
    services: Services, tmp_path: Path, database_url: str
) -> None:
    store = _store(services)
    upload_id = _new_upload(store)
    one, two, three = os.urandom(STRIDE), os.urandom(STRIDE), os.urandom(77)
    _put(store, upload_id, 1, one)
    broken = store.part_target(upload_id, 2, STRIDE)
    assert broken.in_place
    _write(broken, b"\xff" * (STRIDE // 2))  # the client went away half-way: nothing committed
    store.release_part_target(broken)
    assert [p.number for p in store.list_parts(upload_id)] == [1]
    resent, _p2 = _put(store, upload_id, 2, two)
    assert resent

    restarted = service_fixtures.make_services(tmp_path / "data", database_url)
    try:
        recovery.recover(restarted)  # start-up cleaning keeps the live upload's assembly
        again = _store(restarted)
        assert _assembly(restarted, upload_id).stat().st_size >= 2 * STRIDE
        in_place, _p3 = _put(again, upload_id, 3, three)
        assert in_place  # the stride and the slots survived the restart
        inode = _assembly(restarted, upload_id).stat().st_ino
        parts = [(p.number, p.etag) for p in again.list_parts(upload_id)]
        done = again.complete_upload(upload_id, parts)
        assert _read(again) == one + two + three and _only_object_inode(restarted) == inode
        assert done.sha256 == hashlib.sha256(one + two + three).hexdigest()
        recovery.recover(restarted)  # and the finished object stays
        assert _read(again) == one + two + three
    finally:
        restarted.db.dispose()


def test_abort_removes_the_assembly_and_recovery_removes_orphans(services: Services) -> None:
    store = _store(services)
    upload_id = _new_upload(store)
    _put(store, upload_id, 1, os.urandom(STRIDE))
    orphan = services.settings.uploads_dir / upload_id / ("0" * 32)
    orphan.write_bytes(b"left by a crash")
    recovery.recover(services)
    assert not orphan.exists() and _assembly(services, upload_id).exists()
    store.abort_upload(upload_id)
    assert list(services.settings.uploads_dir.iterdir()) == []


def test_boto3_parts_land_in_place_through_the_bucket_api(
    services: Services, tmp_path: Path
) -> None:
    """Through the real S3 API: boto3's parts, sent in parallel, are written into the
    assembly, which becomes the object without a copy."""
    from support import s3_server

    creds = s3_server.new_credentials(services, "alpha")
    data = os.urandom(3 * STRIDE + 999)
    with s3_server.running(services) as url:
        s3 = s3_server.boto3_client(url, creds)
        s3.create_bucket(Bucket="images")
        upload_id = s3.create_multipart_upload(Bucket="images", Key="k")["UploadId"]
        chunks = [data[i : i + STRIDE] for i in range(0, len(data), STRIDE)]

        def send(number: int) -> str:
            return str(
                s3.upload_part(
                    Bucket="images",
                    Key="k",
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=chunks[number - 1],
                )["ETag"]
            )

        with ThreadPoolExecutor(4) as pool:  # as upload_file sends them
            etags = list(pool.map(send, [1, 2, 3, 4]))
        folder = services.settings.uploads_dir / upload_id
        assert ASSEMBLY in [p.name for p in folder.iterdir()]
        inode = (folder / ASSEMBLY).stat().st_ino
        by_number = dict(zip([1, 2, 3, 4], etags, strict=True))
        s3.complete_multipart_upload(
            Bucket="images",
            Key="k",
            UploadId=upload_id,
            MultipartUpload={
                "Parts": [{"PartNumber": n, "ETag": by_number[n]} for n in range(1, 5)]
            },
        )
        assert s3.get_object(Bucket="images", Key="k")["Body"].read() == data
    assert _only_object_inode(services) == inode


def test_hash_frontier_covers_the_committed_prefix_and_forgets_replaced_parts(
    services: Services,
) -> None:
    """Completing hashes only what lies past the frontier: the prefix of committed parts is
    hashed as they arrive (whatever their order), and a re-sent part starts it again."""
    store = _store(services)
    upload_id = _new_upload(store)
    data = [os.urandom(STRIDE) for _ in range(4)]
    for number in (1, 3, 2, 4):
        _put(store, upload_id, number, data[number - 1])

    def rows() -> list[object]:
        with services.db.connect() as conn:
            return list(
                conn.execute(
                    parts.select().where(parts.c.upload_id == upload_id).order_by(parts.c.number)
                )
            )

    frontier = HashFrontier(services.db, services.settings.uploads_dir)
    first, third = rows()[0], rows()[2]
    frontier.committed(upload_id, 3, identity(third))  # 1 to 4 are all there
    # the same row reported again (a commit racing with the hashing of its part) keeps it
    frontier.committed(upload_id, 3, identity(third))
    digest, covered = frontier.take(upload_id, rows())
    assert (
        covered == 4 * STRIDE and digest.hexdigest() == hashlib.sha256(b"".join(data)).hexdigest()
    )
    frontier.committed(upload_id, 1, identity(first))  # hashes 1 to 4 again
    new_two = os.urandom(STRIDE)
    _put(store, upload_id, 2, new_two)  # re-sent: a file of its own
    second = rows()[1]
    frontier.committed(upload_id, 2, identity(second))
    digest, covered = frontier.take(upload_id, rows())
    # started again, hashing part 2 from its own file: the new bytes, not the old ones
    assert covered == 4 * STRIDE
    assert digest.hexdigest() == hashlib.sha256(data[0] + new_two + data[2] + data[3]).hexdigest()
