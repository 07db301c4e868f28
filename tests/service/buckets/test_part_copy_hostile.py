"""UploadPartCopy against a source that changes under it: the part is one whole version of the
source, never a slice of the new version cut at the old version's size."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from imageport.adapters.objectstore.local import LocalObjectStore
from imageport.service.buckets import multipart as multipart_uploads
from imageport.service.buckets import part_copy
from imageport.service.buckets.objects import NewObject
from support import import_fixtures as fx
from support.service_fixtures import make_services


def test_a_source_replaced_during_a_part_copy_is_copied_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = make_services(tmp_path / "data")
    try:
        pid = fx.project_id(services)
        old, new = tmp_path / "old", tmp_path / "new"
        old.write_bytes(b"o" * 1000)
        new.write_bytes(b"n" * 3000)
        fx.put_object(services, pid, "src", old)
        upload = multipart_uploads.create_upload(services, pid, fx.BUCKET, "dst", NewObject())

        def replaced_first(real: Callable[..., Any]) -> Callable[..., Any]:
            def opener(self: LocalObjectStore, bucket: str, key: str) -> Any:
                if key == "src" and not replaced:  # the source is replaced just now
                    replaced.append(True)
                    fx.put_object(services, pid, "src", new)
                return real(self, bucket, key)

            return opener

        replaced: list[bool] = []
        for name in ("open_object", "open_object_with_info"):
            monkeypatch.setattr(
                LocalObjectStore, name, replaced_first(getattr(LocalObjectStore, name))
            )
        part = part_copy.copy_part(
            services, pid, fx.BUCKET, "dst", upload.upload_id, 1, (fx.BUCKET, "src"), None
        )
        assert replaced and part.size == 3000  # all of the version that was opened
        assert part.etag.strip('"') == hashlib.md5(b"n" * 3000).hexdigest()  # noqa: S324
    finally:
        services.db.dispose()
