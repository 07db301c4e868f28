"""The configuration planner's document, read back on the job's side: what the worker planned
arrives whole (the written files' bytes through the scratch folder, not the pipe), and a
document or a file that is not what it claims, a path that is not a sane guest path, or more
bytes than a plan may write is refused before any editor sees it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imageport.configure.edits import Change, ChangeKind, FileOp, Note, OpKind
from imageport.configure.mounts import ApplianceMount
from imageport.configure.plan import Plan
from imageport.service.ports import WorkerError
from imageport.worker import plan_document as pd

INITRD = bytes(range(256)) * 4096  # 1 MiB, binary

PLAN = Plan(
    changes=(
        Change(
            "IMG-NET-RULES",
            "/etc/udev/rules.d/70-persistent-net.rules",
            ChangeKind.REMOVED,
            "removed it",
            ("-SUBSYSTEM==net",),
            "a" * 64,
            None,
        ),
        Change("IMG-DRIVERS", "/boot/initrd.img", ChangeKind.EDITED, "appended virtio"),
    ),
    notes=(Note("IMG-CLOUD-INIT", "not installed"),),
    operations=(
        FileOp("/etc/udev/rules.d/70-persistent-net.rules", OpKind.REMOVE, "a" * 64),
        FileOp("/boot/initrd.img", OpKind.WRITE, "b" * 64, INITRD),
        FileOp("/etc/x.service", OpKind.SYMLINK, "absent", target="/dev/null"),
        FileOp("/var/log/imageport-configuration.log", OpKind.WRITE, "absent", b"log\n", 0o640),
    ),
    rules=("IMG-NET-RULES", "IMG-DRIVERS"),
    mounts=(
        ApplianceMount("/dev/sda3", "/"),
        ApplianceMount("/dev/sda4", "/boot"),
        ApplianceMount("/dev/vg0/home", "/home", "subvol=@home"),
    ),
)


def _through_json(doc: object) -> object:
    return json.loads(json.dumps(doc))


def test_the_plan_arrives_whole_with_its_bytes_through_files(tmp_path: Path) -> None:
    doc = pd.plan_to_document(PLAN, tmp_path)
    assert len(json.dumps(doc)) < 4096  # the initrd is not in the pipe
    assert pd.data_file(tmp_path, 1).read_bytes() == INITRD
    assert pd.plan_from_document(_through_json(doc), tmp_path) == PLAN


def test_a_file_that_is_not_what_the_document_says_is_refused(tmp_path: Path) -> None:
    doc = pd.plan_to_document(PLAN, tmp_path)
    pd.data_file(tmp_path, 1).write_bytes(INITRD[:-1] + b"X")
    with pytest.raises(WorkerError, match="operation 1's data is not what the document says"):
        pd.plan_from_document(_through_json(doc), tmp_path)


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("path", "/etc/../shadow", "path"),
        ("path", "etc/fstab", "path"),
        ("kind", "chmod", "kind"),
        ("expect", "anything", "expect"),
        ("mode", 0o100000, "mode"),
        ("size", pd.MAX_PLAN_DATA_BYTES + 1, "writes more than the plan may"),
    ],
)
def test_a_bad_operation_is_refused(tmp_path: Path, field: str, value: object, said: str) -> None:
    doc = pd.plan_to_document(PLAN, tmp_path)
    assert isinstance(doc, dict)
    doc["operations"][3][field] = value
    with pytest.raises(WorkerError, match=said):
        pd.plan_from_document(_through_json(doc), tmp_path)


def test_a_plan_writing_too_much_is_not_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pd, "MAX_PLAN_DATA_BYTES", len(INITRD))
    with pytest.raises(ValueError, match="more than"):
        pd.plan_to_document(PLAN, tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("mount", "said"),
    [
        ({"device": "/etc/shadow", "mountpoint": "/", "options": ""}, "mount device"),
        ({"device": "/dev/sda1", "mountpoint": "/x/../y", "options": ""}, "path"),
        ({"device": "/dev/sda1", "mountpoint": "/y", "options": "exec,suid"}, "mount options"),
    ],
)
def test_a_bad_mount_is_refused(tmp_path: Path, mount: dict[str, str], said: str) -> None:
    doc = pd.plan_to_document(PLAN, tmp_path)
    doc["mounts"].append(mount)
    with pytest.raises(WorkerError, match=said):
        pd.plan_from_document(_through_json(doc), tmp_path)


def test_wrong_schema_is_refused(tmp_path: Path) -> None:
    with pytest.raises(WorkerError, match="schema"):
        pd.plan_from_document({"schema": "imageport.worker/1"}, tmp_path)
