"""The local object store against its port: durable, atomic objects and restartable multipart
uploads, on a real SQLite database and real files in tmp_path."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from imageport.adapters.db.engine import open_database
from imageport.adapters.objectstore.assembly import MIN_PART_SIZE
from imageport.adapters.objectstore.local import LocalObjectStore
from imageport.service.buckets.checks import precondition_failed
from imageport.service.errors import Conflict, NotFound, RequestInvalid, ServiceError
from imageport.service.ports import ObjectInfo, StagedFile
from imageport.settings import Settings, load_settings

_ENGINES: list[Engine] = []


@pytest.fixture(autouse=True)
def _dispose_engines() -> Iterator[None]:
    """Close every database connection a test opened (PostgreSQL sockets must not leak)."""
    yield
    while _ENGINES:
        _ENGINES.pop().dispose()


def _open(url: str) -> Engine:
    engine = open_database(url)
    _ENGINES.append(engine)
    return engine


def _store(data_dir: Path, database_url: str | None = None) -> tuple[Settings, LocalObjectStore]:
    settings = load_settings({}, data_dir=data_dir, database_url=database_url)
    return settings, LocalObjectStore(settings, _open(settings.db_url))


def _stage(store: LocalObjectStore, data: bytes) -> StagedFile:
    path = store.staging_path()
    with open(path, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    return StagedFile(
        path,
        len(data),
        hashlib.md5(data).hexdigest(),  # noqa: S324
        hashlib.sha256(data).hexdigest(),
    )


@pytest.fixture
def store(tmp_path: Path, database_url: str) -> LocalObjectStore:
    """A store with bucket ``bkt``, on SQLite and on PostgreSQL (``database_url``)."""
    from imageport.service.tables import projects

    settings, made = _store(tmp_path / "data", database_url)
    with _open(settings.db_url).begin() as conn:
        conn.execute(projects.insert().values(id="p" * 32, name="p", created_at="x"))
    made.create_bucket("bkt", "p" * 32, "STANDARD", "local-1")
    return made


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_object_replaced_atomically_and_old_data_removed(
    store: LocalObjectStore, tmp_path: Path
) -> None:
    first = store.commit_object(
        "bkt",
        "a/b.img",
        _stage(store, b"one"),
        content_type="x/y",
        storage_class="STANDARD",
        metadata={"k": "v"},
    )
    assert first.etag == f'"{hashlib.md5(b"one").hexdigest()}"'  # noqa: S324
    reader = store.open_object("bkt", "a/b.img")
    second = store.commit_object(
        "bkt",
        "a/b.img",
        _stage(store, b"second"),
        content_type="x/y",
        storage_class="WARM",
        metadata={},
    )
    # a reader that opened the old version still reads it whole; new readers see the new one
    assert reader.read() == b"one"
    reader.close()
    with store.open_object("bkt", "a/b.img") as fresh:
        assert fresh.read() == b"second"
    got = store.get_object("bkt", "a/b.img")
    assert got is not None and got.sha256 == hashlib.sha256(b"second").hexdigest()
    assert got.storage_class == "WARM" and got.size == 6 and second.etag == got.etag
    objects_dir = tmp_path / "data" / "objects"
    assert len(_files(objects_dir)) == 1  # the replaced blob is gone
    assert "a" not in {p.name for p in objects_dir.iterdir()}  # names never come from keys
    assert _files(tmp_path / "data" / "tmp") == []
    with store.local_path("bkt", "a/b.img") as path:
        assert path.read_bytes() == b"second"
        assert os.stat(path).st_ino == os.stat(_files(objects_dir)[0]).st_ino  # no copy
    assert store.delete_object("bkt", "a/b.img") is True
    assert store.delete_object("bkt", "a/b.img") is False
    assert _files(objects_dir) == [] and _files(tmp_path / "data" / "tmp") == []


def test_conditional_delete_deletes_only_the_version_it_checked(
    store: LocalObjectStore, tmp_path: Path
) -> None:
    """A write that lands between a conditional delete's check and its delete must not be
    deleted on the strength of the old version's check: the new version is checked again."""
    old = store.commit_object(
        "bkt", "k", _stage(store, b"old"), content_type="x/y", storage_class="STANDARD", metadata={}
    )
    seen: list[str | None] = []

    def check(current: ObjectInfo | None) -> None:
        seen.append(None if current is None else current.etag)
        if current is not None and current.etag != old.etag:
            raise precondition_failed()
        if len(seen) == 1:  # another writer replaces the object right after the check
            store.commit_object(
                "bkt",
                "k",
                _stage(store, b"new"),
                content_type="x/y",
                storage_class="STANDARD",
                metadata={},
            )

    with pytest.raises(ServiceError) as failed:
        store.delete_object_if("bkt", "k", check)
    assert failed.value.status == 412 and len(seen) == 2
    with store.open_object("bkt", "k") as kept:
        assert kept.read() == b"new"
    assert store.delete_object_if("bkt", "k", lambda current: None) is True
    assert store.delete_object_if("bkt", "k", lambda current: None) is False
    assert _files(tmp_path / "data" / "objects") == []


def test_listing_is_binary_ordered_and_prefix_is_case_sensitive(store: LocalObjectStore) -> None:
    for key in ("b", "A/1", "a/2", "a/1", "a%", "é"):
        store.commit_object(
            "bkt",
            key,
            _stage(store, key.encode()),
            content_type="",
            storage_class="STANDARD",
            metadata={},
        )
    assert [o.key for o in store.list_objects("bkt")] == ["A/1", "a%", "a/1", "a/2", "b", "é"]
    assert [o.key for o in store.list_objects("bkt", prefix="a")] == ["a%", "a/1", "a/2"]
    assert [o.key for o in store.list_objects("bkt", prefix="a/", start_after="a/1")] == ["a/2"]
    assert [o.key for o in store.list_objects("bkt", limit=2)] == ["A/1", "a%"]


def test_uploads_listed_in_key_then_id_order_from_markers(store: LocalObjectStore) -> None:
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
        prefix: str = "", key_marker: str = "", upload_id_marker: str = ""
    ) -> list[tuple[str, str]]:
        uploads = store.list_uploads(
            "bkt", prefix=prefix, key_marker=key_marker, upload_id_marker=upload_id_marker
        )
        return [(u.key, u.upload_id) for u in uploads]

    assert listed() == made  # binary key order, on PostgreSQL too ("B" < "a/1" < "b" < "é")
    assert [key for key, _ in made] == ["B", "a/1", "b", "b", "é"]
    assert listed(key_marker="b") == made[4:]
    assert listed(key_marker="b", upload_id_marker=made[2][1]) == made[3:]
    assert listed(prefix="b") == made[2:4]
    assert [(u.key, u.upload_id) for u in store.list_uploads("bkt", limit=2)] == made[:2]


def test_bucket_delete_refused_while_not_empty(store: LocalObjectStore) -> None:
    with pytest.raises(Conflict) as exc:
        store.create_bucket("bkt", "p" * 32, "STANDARD", "local-1")
    assert exc.value.code == "BucketAlreadyExists"
    store.commit_object(
        "bkt", "k", _stage(store, b"x"), content_type="", storage_class="STANDARD", metadata={}
    )
    with pytest.raises(Conflict) as exc:
        store.delete_bucket("bkt")
    assert exc.value.code == "BucketNotEmpty"
    store.delete_object("bkt", "k")
    store.create_upload("bkt", "big", content_type="", storage_class="STANDARD", metadata={})
    store.delete_bucket("bkt")  # unfinished uploads go with it
    assert store.get_bucket("bkt") is None


def test_multipart_survives_restart_and_joins_parts(
    store: LocalObjectStore, tmp_path: Path, database_url: str
) -> None:
    one = os.urandom(MIN_PART_SIZE)
    two = os.urandom(MIN_PART_SIZE + 7)
    three = b"tail"
    upload = store.create_upload(
        "bkt",
        "disk.qcow2",
        content_type="application/x-qemu-disk",
        storage_class="COLD",
        metadata={"os": "linux"},
    )
    p1 = store.commit_part(upload.upload_id, 1, _stage(store, one))
    store.commit_part(upload.upload_id, 3, _stage(store, b"will be replaced"))

    # "restart": a new store on the same data dir and database sees the upload and its parts
    _settings, again = _store(tmp_path / "data", database_url)
    assert again.get_upload(upload.upload_id) == upload
    assert [(p.number, p.etag) for p in again.list_parts(upload.upload_id)] == [
        (1, p1.etag),
        (3, f'"{hashlib.md5(b"will be replaced").hexdigest()}"'),  # noqa: S324
    ]
    p2 = again.commit_part(upload.upload_id, 2, _stage(again, two))
    p3 = again.commit_part(upload.upload_id, 3, _stage(again, three))

    with pytest.raises(RequestInvalid) as exc:
        again.complete_upload(upload.upload_id, [(2, p2.etag), (1, p1.etag)])
    assert exc.value.code == "InvalidPartOrder"
    with pytest.raises(RequestInvalid) as exc:
        again.complete_upload(upload.upload_id, [(1, p1.etag), (2, '"' + "0" * 32 + '"')])
    assert exc.value.code == "InvalidPart"
    with pytest.raises(RequestInvalid) as exc:
        again.complete_upload(upload.upload_id, [(1, p1.etag), (3, p3.etag), (4, p3.etag)])
    assert exc.value.code == "InvalidPart"

    done = again.complete_upload(
        upload.upload_id, [(1, p1.etag), (2, p2.etag.strip('"')), (3, p3.etag)]
    )
    whole = one + two + three
    md5s = b"".join(hashlib.md5(p).digest() for p in (one, two, three))  # noqa: S324
    assert done.etag == f'"{hashlib.md5(md5s).hexdigest()}-3"'  # noqa: S324
    assert done.sha256 == hashlib.sha256(whole).hexdigest() and done.size == len(whole)
    assert done.storage_class == "COLD" and done.metadata == {"os": "linux"}
    with again.open_object("bkt", "disk.qcow2") as joined:
        assert joined.read() == whole
    assert again.get_upload(upload.upload_id) is None
    assert _files(tmp_path / "data" / "uploads") == []
    assert _files(tmp_path / "data" / "tmp") == []
    assert [p.name for p in again.iter_blobs_in_use()] == [
        p.name for p in _files(tmp_path / "data" / "objects")
    ]


def test_small_middle_part_and_abort(store: LocalObjectStore, tmp_path: Path) -> None:
    upload = store.create_upload("bkt", "k", content_type="", storage_class="STANDARD", metadata={})
    p1 = store.commit_part(upload.upload_id, 1, _stage(store, b"small"))
    p2 = store.commit_part(upload.upload_id, 2, _stage(store, b"last"))
    with pytest.raises(RequestInvalid) as exc:
        store.complete_upload(upload.upload_id, [(1, p1.etag), (2, p2.etag)])
    assert exc.value.code == "EntityTooSmall"
    # a single small part is fine: it is also the last one
    store.abort_upload(upload.upload_id)
    assert _files(tmp_path / "data" / "uploads") == []
    with pytest.raises(NotFound) as missing:
        store.commit_part(upload.upload_id, 3, _stage(store, b"late"))
    assert missing.value.code == "NoSuchUpload"
    with pytest.raises(NotFound):
        store.abort_upload(upload.upload_id)
