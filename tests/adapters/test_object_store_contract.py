"""The ``ObjectStore`` port's contract, held against every implementation: the local store (on
SQLite; its own tests add PostgreSQL, files and restarts) and the in-memory fake the service
tests use. What a caller of the port may rely on is asserted here once, for both."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from imageport.adapters.db.engine import open_database
from imageport.adapters.objectstore.assembly import MIN_PART_SIZE
from imageport.adapters.objectstore.local import LocalObjectStore
from imageport.service.errors import Conflict, NotFound, RequestInvalid, ServiceError
from imageport.service.ports import ObjectInfo, ObjectStore, PartInfo, StagedFile
from imageport.service.tables import projects
from imageport.settings import load_settings
from support.fakes import FakeObjectStore

MINE, THEIRS = "p" * 32, "q" * 32


@pytest.fixture(params=["local", "fake"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    """Each implementation, with the empty bucket ``bkt`` of project ``MINE``."""
    made: ObjectStore
    if request.param == "fake":
        made = FakeObjectStore(tmp_path / "scratch")
        made.create_bucket("bkt", MINE, "STANDARD", "local-1")
        yield made
        return
    settings = load_settings({}, data_dir=tmp_path / "data")
    engine = open_database(settings.db_url)
    with engine.begin() as conn:
        for pid in (MINE, THEIRS):
            conn.execute(projects.insert().values(id=pid, name=pid[:1], created_at="x"))
    made = LocalObjectStore(settings, engine)
    made.create_bucket("bkt", MINE, "STANDARD", "local-1")
    yield made
    engine.dispose()


def _stage(store: ObjectStore, data: bytes) -> StagedFile:
    """A body received completely, as the API stages one."""
    path = store.staging_path()
    with open(path, "xb") as out:
        out.write(data)
        os.fsync(out.fileno())
    md5 = hashlib.md5(data).hexdigest()  # noqa: S324 - the S3 ETag
    return StagedFile(path, len(data), md5, hashlib.sha256(data).hexdigest())


def _put(store: ObjectStore, key: str, data: bytes, bucket: str = "bkt") -> ObjectInfo:
    return store.commit_object(
        bucket, key, _stage(store, data), content_type="x/y", storage_class="STANDARD", metadata={}
    )


def _part(store: ObjectStore, upload_id: str, number: int, data: bytes) -> PartInfo:
    """Write a part where the store says (in place or a file of its own) and commit it."""
    target = store.part_target(upload_id, number, len(data))
    try:
        if target.in_place:
            fd = os.open(target.path, os.O_WRONLY)
            try:
                os.pwrite(fd, data, target.offset)
                os.fsync(fd)
            finally:
                os.close(fd)
        else:
            target.path.write_bytes(data)
        md5 = hashlib.md5(data).hexdigest()  # noqa: S324
        offset = target.offset if target.in_place else None
        staged = StagedFile(target.path, len(data), md5, "", offset)
        return store.commit_part(upload_id, number, staged)
    finally:
        store.release_part_target(target)


def _code(call: object) -> str:
    with pytest.raises(ServiceError) as caught:
        call()  # type: ignore[operator]
    return caught.value.code


def test_staging_paths_are_fresh(store: ObjectStore) -> None:
    first, second = store.staging_path(), store.staging_path()
    assert first != second and not first.exists() and first.parent.is_dir()


def test_buckets(store: ObjectStore) -> None:
    store.create_bucket("zeta", MINE, "COLD", "local-1")
    store.create_bucket("other", THEIRS, "STANDARD", "local-1")
    assert [b.name for b in store.list_buckets(MINE)] == ["bkt", "zeta"]
    found = store.get_bucket("zeta")
    assert found is not None
    assert (found.project_id, found.storage_class, found.location) == (MINE, "COLD", "local-1")
    assert store.get_bucket("nope") is None
    with pytest.raises(Conflict) as taken:
        store.create_bucket("zeta", THEIRS, "STANDARD", "local-1")
    assert taken.value.code == "BucketAlreadyExists"
    _put(store, "k", b"x", "zeta")
    with pytest.raises(Conflict) as full:
        store.delete_bucket("zeta")
    assert full.value.code == "BucketNotEmpty"
    store.delete_object("zeta", "k")
    upload = store.create_upload("zeta", "u", content_type="", storage_class="COLD", metadata={})
    store.delete_bucket("zeta")  # its unfinished uploads go with it
    assert store.get_bucket("zeta") is None and store.get_upload(upload.upload_id) is None
    with pytest.raises(NotFound) as gone:
        store.delete_bucket("zeta")
    assert gone.value.code == "NoSuchBucket"


def test_an_object_is_committed_read_replaced_and_deleted(store: ObjectStore) -> None:
    staged = _stage(store, b"one")
    info = store.commit_object(
        "bkt", "a/b", staged, content_type="x/y", storage_class="WARM", metadata={"k": "v"}
    )
    assert not staged.path.exists()  # the store took the staged file
    assert info.etag == f'"{hashlib.md5(b"one").hexdigest()}"'  # noqa: S324
    assert (info.size, info.sha256) == (3, hashlib.sha256(b"one").hexdigest())
    assert (info.content_type, info.storage_class, dict(info.metadata)) == (
        "x/y",
        "WARM",
        {"k": "v"},
    )
    assert store.get_object("bkt", "a/b") == info
    reader = store.open_object("bkt", "a/b")
    second = _put(store, "a/b", b"second")
    assert reader.read() == b"one"  # an opened version stays whole
    reader.close()
    found, fresh = store.open_object_with_info("bkt", "a/b")
    with fresh:
        assert found == second and fresh.read() == b"second"
        fresh.seek(1)
        assert fresh.read(3) == b"eco"
    with store.local_path("bkt", "a/b") as path:
        assert path.read_bytes() == b"second"
    assert store.delete_object("bkt", "a/b") is True
    assert store.delete_object("bkt", "a/b") is False
    assert store.get_object("bkt", "a/b") is None
    assert _code(lambda: store.open_object("bkt", "a/b")) == "NoSuchKey"
    assert _code(lambda: store.open_object_with_info("bkt", "a/b")) == "NoSuchKey"

    def held() -> None:
        with store.local_path("bkt", "a/b"):
            pass

    assert _code(held) == "NoSuchKey"


def test_a_conditional_delete_deletes_only_the_version_it_checked(store: ObjectStore) -> None:
    old = _put(store, "k", b"old")
    seen: list[str | None] = []

    def check(current: ObjectInfo | None) -> None:
        seen.append(None if current is None else current.etag)
        if current is not None and current.etag != old.etag:
            raise RequestInvalid("PreconditionFailed", "not the version checked")
        if len(seen) == 1:  # another writer replaces the object right after the check
            _put(store, "k", b"new")

    assert _code(lambda: store.delete_object_if("bkt", "k", check)) == "PreconditionFailed"
    assert len(seen) == 2
    with store.open_object("bkt", "k") as kept:
        assert kept.read() == b"new"
    assert store.delete_object_if("bkt", "k", lambda current: None) is True
    assert store.delete_object_if("bkt", "k", lambda current: None) is False


def test_listing_is_in_binary_key_order(store: ObjectStore) -> None:
    for key in ("b", "A/1", "a/2", "a/1", "a%", "é"):
        _put(store, key, key.encode())
    assert [o.key for o in store.list_objects("bkt")] == ["A/1", "a%", "a/1", "a/2", "b", "é"]
    assert [o.key for o in store.list_objects("bkt", prefix="a")] == ["a%", "a/1", "a/2"]
    assert [o.key for o in store.list_objects("bkt", prefix="a/", start_after="a/1")] == ["a/2"]
    assert [o.key for o in store.list_objects("bkt", limit=2)] == ["A/1", "a%"]


def test_uploads_are_listed_in_key_then_id_order(store: ObjectStore) -> None:
    made = sorted(
        (
            key,
            store.create_upload(
                "bkt", key, content_type="", storage_class="STANDARD", metadata={}
            ).upload_id,
        )
        for key in ("b", "B", "b", "a/1", "é")
    )

    def listed(
        key_marker: str = "", upload_id_marker: str = "", prefix: str = ""
    ) -> list[tuple[str, str]]:
        found = store.list_uploads(
            "bkt", prefix=prefix, key_marker=key_marker, upload_id_marker=upload_id_marker
        )
        return [(u.key, u.upload_id) for u in found]

    assert listed() == made
    assert listed(key_marker="b") == made[4:]
    assert listed(key_marker="b", upload_id_marker=made[2][1]) == made[3:]
    assert listed(prefix="b") == made[2:4]
    assert [(u.key, u.upload_id) for u in store.list_uploads("bkt", limit=2)] == made[:2]


def test_what_a_project_holds_is_counted(store: ObjectStore) -> None:
    store.create_bucket("theirs", THEIRS, "STANDARD", "local-1")
    _put(store, "a", b"12345")
    _put(store, "b", b"678")
    _put(store, "x", b"not mine", "theirs")
    upload = store.create_upload(
        "bkt", "big", content_type="", storage_class="STANDARD", metadata={}
    )
    store.create_upload("theirs", "big", content_type="", storage_class="STANDARD", metadata={})
    _part(store, upload.upload_id, 1, b"abcd")
    _part(store, upload.upload_id, 2, b"ef")
    _part(store, upload.upload_id, 3, b"x" * 64)
    assert store.project_bytes(MINE) == 5 + 3 + 4 + 2 + 64
    assert store.project_bytes(THEIRS) == 8
    assert store.count_uploads(MINE) == 1 and store.count_uploads(THEIRS) == 1
    assert store.count_parts(upload.upload_id, smaller_than=10, except_number=2) == 1
    assert store.count_parts(upload.upload_id, smaller_than=100, except_number=9) == 3


def test_a_multipart_upload_is_completed_as_s3_does(store: ObjectStore) -> None:
    one, two, three = os.urandom(MIN_PART_SIZE), os.urandom(MIN_PART_SIZE), b"tail"
    upload = store.create_upload(
        "bkt", "disk", content_type="application/x-disk", storage_class="COLD", metadata={"os": "x"}
    )
    assert store.get_upload(upload.upload_id) == upload
    p1 = _part(store, upload.upload_id, 1, one)
    _part(store, upload.upload_id, 3, b"will be replaced")
    p2 = _part(store, upload.upload_id, 2, two)
    p3 = _part(store, upload.upload_id, 3, three)
    assert p1.etag == f'"{hashlib.md5(one).hexdigest()}"'  # noqa: S324
    assert [(p.number, p.size, p.etag) for p in store.list_parts(upload.upload_id)] == [
        (1, len(one), p1.etag),
        (2, len(two), p2.etag),
        (3, 4, p3.etag),
    ]
    uid = upload.upload_id
    assert _code(lambda: store.complete_upload(uid, [])) == "MalformedXML"
    assert _code(lambda: store.complete_upload(uid, [(2, p2.etag), (1, p1.etag)])) == (
        "InvalidPartOrder"
    )
    assert _code(lambda: store.complete_upload(uid, [(1, p1.etag), (2, p1.etag)])) == "InvalidPart"
    assert _code(lambda: store.complete_upload(uid, [(1, p1.etag), (4, p3.etag)])) == "InvalidPart"
    assert _code(
        lambda: store.complete_upload(uid, [(1, p1.etag), (3, p3.etag), (2, p2.etag)])
    ) == ("InvalidPartOrder")
    done = store.complete_upload(uid, [(1, p1.etag), (2, p2.etag.strip('"')), (3, p3.etag)])
    whole = one + two + three
    md5s = b"".join(hashlib.md5(p).digest() for p in (one, two, three))  # noqa: S324
    assert done.etag == f'"{hashlib.md5(md5s).hexdigest()}-3"'  # noqa: S324
    assert (done.size, done.sha256) == (len(whole), hashlib.sha256(whole).hexdigest())
    assert (done.content_type, done.storage_class, dict(done.metadata)) == (
        "application/x-disk",
        "COLD",
        {"os": "x"},
    )
    assert store.get_object("bkt", "disk") == done
    with store.open_object("bkt", "disk") as joined:
        assert joined.read() == whole
    assert store.get_upload(uid) is None and store.list_uploads("bkt") == []
    assert store.project_bytes(MINE) == len(whole)


def test_a_small_part_but_the_last_is_too_small_and_an_abort_ends_the_upload(
    store: ObjectStore,
) -> None:
    upload = store.create_upload("bkt", "k", content_type="", storage_class="STANDARD", metadata={})
    uid = upload.upload_id
    p1 = _part(store, uid, 1, b"small")
    p2 = _part(store, uid, 2, b"last")
    assert _code(lambda: store.complete_upload(uid, [(1, p1.etag), (2, p2.etag)])) == (
        "EntityTooSmall"
    )
    store.abort_upload(uid)
    assert store.get_upload(uid) is None and store.project_bytes(MINE) == 0
    assert _code(lambda: store.commit_part(uid, 3, _stage(store, b"late"))) == "NoSuchUpload"
    assert _code(lambda: store.abort_upload(uid)) == "NoSuchUpload"
    assert _code(lambda: store.complete_upload(uid, [(1, p1.etag)])) == "NoSuchUpload"


def test_removing_orphans_keeps_every_object_and_part(store: ObjectStore) -> None:
    """Start-up's sweep removes only what no record names: the current version of each
    object and the parts of an open upload all read back the same afterwards."""
    _put(store, "old", b"replaced")
    _put(store, "old", b"kept version")
    _put(store, "other", b"another object")
    upload = store.create_upload(
        "bkt", "big", content_type="x/y", storage_class="STANDARD", metadata={}
    )
    _part(store, upload.upload_id, 1, b"p" * MIN_PART_SIZE)
    store.remove_orphans()
    for key, data in (("old", b"kept version"), ("other", b"another object")):
        with store.open_object("bkt", key) as got:
            assert got.read() == data
    assert [p.number for p in store.list_parts(upload.upload_id)] == [1]
    store.complete_upload(upload.upload_id, [(1, store.list_parts(upload.upload_id)[0].etag)])
    with store.open_object("bkt", "big") as got:
        assert got.read() == b"p" * MIN_PART_SIZE
