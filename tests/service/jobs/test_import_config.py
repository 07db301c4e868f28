"""The import job with automatic configuration (``is_config: true``) on real parts but the
appliance: SQLite, the local object store, qemu-img, the checker and the configuration planner
in limited worker processes, and :class:`~support.fakes.guest_editor.TreeEditor` in place of
libguestfs (it rebuilds the synthetic guest with the plan applied; the real appliance runs in
tests/e2e/test_is_config_e2e.py).

A guest with the network defects the merged fixes clear becomes active configured: its report
carries the change record, ``__is_config_init`` is "true" only when the initialization rules
pass on the result, and the stored disk no longer has the defects. Errors a fix may clear do
not fail the first check; errors left after configuration fail the job. A quick import with
``is_config`` is refused at registration, as is ``is_config`` where no editor is offered."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from imageport.configure.edits import ChangeKind, FileOp, OpKind
from imageport.configure.mounts import ApplianceMount
from imageport.configure.plan import Plan
from imageport.configure.record import GUEST_LOG
from imageport.service.context import Services
from imageport.service.errors import RequestInvalid
from imageport.service.images.lifecycle import create_image_from_file
from imageport.service.jobs import import_configure
from imageport.service.jobs import state as job_state
from imageport.service.jobs.import_job import run_job
from imageport.service.ports import EditRun, GuestEditError, WorkerError
from imageport.service.tools.check import check_image
from support import guest_fixtures as gf
from support import import_fixtures as fx
from support import is_config_fixtures as icf
from support import service_fixtures
from support.fakes import FakeImageWorker
from support.fakes.guest_editor import TreeEditor
from support.kernel_fixtures import open_guest


@pytest.fixture
def editor(services: Services) -> Iterator[TreeEditor]:
    made = TreeEditor(icf.NAME, icf.ROOT, icf.BOOT)
    services.editor = made
    yield made


def _stored(services: Services, job_id: str) -> Path:
    image = fx.image_row(services, job_id)
    return services.settings.images_dir / str(image.blob)


def _rules(findings: object) -> set[str]:
    assert isinstance(findings, list)
    return {f["rule_id"] for f in findings if f["severity"] != "info"}


def test_network_defects_are_fixed_and_the_image_is_initialized(
    services: Services, editor: TreeEditor
) -> None:
    job_id = fx.register(services, icf.defective_qcow2(), name="configured", is_config=True)
    phases: list[str] = []
    editor.on_apply = lambda: phases.append(fx.job_row(services, job_id).phase)
    run_job(services, job_id)

    job = fx.job_row(services, job_id)
    assert (job.status, job.error_code, job.fail_reason) == ("SUCCESS", None, None)
    assert phases == ["configure"]  # current_task while the appliance works
    image = fx.image_row(services, job_id)
    assert image.status == "active" and image.disk_format == "qcow2"
    assert image.properties["__is_config_init"] == "true"
    # the report is the check of the result, with the record of what changed
    report = image.report
    assert not _rules(report["findings"]) & set(icf.NETWORK_RULES)
    section = report["configuration"]
    assert section["applied"] is True
    assert section["before"]["warnings"] >= 3
    changes = {c["path"]: c for c in section["changes"]}
    assert changes[icf.PERSISTENT_NET]["action"] == ChangeKind.REMOVED.value
    assert changes[icf.PERSISTENT_NET]["rule"] == "IMG-NET-RULES"
    assert "52:54:00:12:34:56" in changes[icf.PERSISTENT_NET]["why"]
    assert "+iface eth0 inet dhcp" in changes["/etc/network/interfaces"]["diff"]
    # what the editor was given, and what the stored disk holds now
    (ops,) = editor.applied
    assert {(op.path, op.kind) for op in ops} >= {
        (icf.PERSISTENT_NET, OpKind.REMOVE),
        (GUEST_LOG, OpKind.WRITE),
    }
    stored = _stored(services, job_id)
    after = check_image(stored)
    assert not {f.rule_id for f in after.findings if f.severity.value != "info"} & set(
        icf.NETWORK_RULES
    )
    with open_guest(stored) as guest:
        assert not guest.files.exists(icf.PERSISTENT_NET)
        log = guest.files.read_text(GUEST_LOG) or ""
    assert f"IMG-NET-RULES removed {icf.PERSISTENT_NET}" in log
    assert list(services.settings.tmp_dir.iterdir()) == []


def test_without_is_config_the_image_is_stored_as_it_was(
    services: Services, editor: TreeEditor
) -> None:
    job_id = fx.register(services, icf.defective_qcow2(), name="as-is")
    run_job(services, job_id)
    assert fx.job_row(services, job_id).status == "SUCCESS"
    image = fx.image_row(services, job_id)
    assert "configuration" not in image.report
    assert image.properties["__is_config_init"] == "true"  # as registered (is_config_init)
    assert editor.applied == []
    assert _rules(image.report["findings"]) >= set(icf.NETWORK_RULES)


def test_an_edit_that_clears_nothing_leaves_is_config_init_false(
    services: Services, editor: TreeEditor
) -> None:
    editor.apply_nothing = True
    job_id = fx.register(services, icf.defective_qcow2(), name="unfixed", is_config=True)
    run_job(services, job_id)
    assert fx.job_row(services, job_id).status == "SUCCESS"  # warnings only
    image = fx.image_row(services, job_id)
    assert image.properties["__is_config_init"] == "false"
    assert _rules(image.report["findings"]) >= set(icf.NETWORK_RULES)
    assert image.report["configuration"]["changes"]


def test_an_error_a_fix_may_clear_is_judged_after_configuration(
    services: Services, editor: TreeEditor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A data-disk line in fstab errs (IMG-FSTAB-DATA-DISK). Taken as a rule a fix clears,
    the first check lets it through; an editor that changes nothing leaves it, so the check of
    the result fails the job, saying so, with the change record in the kept report. Without
    ``is_config`` the same file fails at the first check."""
    disk = gf.synthetic_guest(data_disk=True)
    plain = fx.register(services, disk, name="plain")
    run_job(services, plain)
    assert (fx.job_row(services, plain).error_code, fx.job_row(services, plain).phase) == (
        "IMG-FSTAB-DATA-DISK",
        "check",
    )

    monkeypatch.setattr(import_configure, "FIXABLE_RULES", frozenset({"IMG-FSTAB-DATA-DISK"}))
    editor.apply_nothing = True
    job_id = fx.register(services, disk, name="configured", is_config=True)
    run_job(services, job_id)
    job = fx.job_row(services, job_id)
    assert (job.status, job.error_code, job.phase) == ("FAIL", "IMG-FSTAB-DATA-DISK", "recheck")
    assert "still reported after automatic configuration" in job.fail_reason
    image = fx.image_row(services, job_id)
    assert image.status == "killed"
    assert image.report["configuration"]["applied"] is True
    assert list(services.settings.tmp_dir.iterdir()) == []


def test_quick_import_with_is_config_is_refused(services: Services, editor: TreeEditor) -> None:
    """On the quick-import route and on the action route with ``is_quick_import``."""
    pid = fx.project_id(services)
    fx.put_object(services, pid, "uploads/quick.raw", icf.defective_guest())
    body = {
        "name": "quick",
        "image_url": f"{fx.BUCKET}:uploads/quick.raw",
        "min_disk": 40,
        "os_version": "Debian GNU/Linux 12.0.0 64bit",
        "is_config": True,
    }
    for quick_route, extra in ((True, {}), (False, {"is_quick_import": True})):
        with pytest.raises(RequestInvalid) as refused:
            create_image_from_file(services, pid, {**body, **extra}, quick=quick_route)
        assert refused.value.code == "IMG.0001"
        assert "fast import performs no configuration" in refused.value.message
        assert "imageport optimize" in refused.value.message


def test_is_config_is_refused_where_no_editor_is_offered(services: Services) -> None:
    assert services.editor is None
    with pytest.raises(RequestInvalid) as refused:
        fx.register(services, icf.defective_qcow2(), is_config=True)
    assert refused.value.code == "IMG.0001"
    assert "does not offer automatic configuration" in refused.value.message


def test_the_phase_tables_cover_the_job_in_order() -> None:
    for table in (job_state.CONFIG_PHASES, job_state.CONFIG_BOOT_PHASES):
        spans = list(table.values())
        assert spans[0][0] == 0.0 and spans[-1][1] == 100.0
        assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
        assert list(table)[list(table).index("check") + 1] == "configure"


class _PlannerFails(FakeImageWorker):
    def plan_configuration(
        self, raw: Path, folder: Path, *, when: str, cancelled: Callable[[], bool]
    ) -> Plan:
        raise WorkerError("the configuration planner exceeded its CPU limit", limit="cpu")


class _FileChanged(TreeEditor):
    def apply(
        self, disk: Path, mounts: Sequence[ApplianceMount], operations: Sequence[FileOp]
    ) -> EditRun:
        raise GuestEditError("/etc/fstab is not what the plan was made from; nothing was changed")


@pytest.mark.parametrize(
    ("worker", "editor_made", "said"),
    [
        (_PlannerFails(), None, "could not be planned, nothing was stored: the configuration"),
        (None, _FileChanged("x", {}), "configuration failed, nothing was stored: /etc/fstab"),
    ],
)
def test_a_configuration_that_cannot_be_done_fails_the_job_keeping_the_report(
    tmp_path: Path,
    worker: FakeImageWorker | None,
    editor_made: TreeEditor | None,
    said: str,
) -> None:
    """(The fakes: the worker answers a clean Debian qcow2 and a plan of one write.)"""
    services = service_fixtures.make_fake_services(tmp_path / "data")
    fake = worker or FakeImageWorker()
    fake.plan = Plan((), (), (FileOp("/etc/motd", OpKind.WRITE, "absent", b"hi\n"),), ())
    services.worker = fake
    services.editor = editor_made or TreeEditor("x", {})
    job_id = fx.register(services, fx.good_image("qcow2"), name="broken", is_config=True)
    run_job(services, job_id)
    job = fx.job_row(services, job_id)
    assert (job.status, job.error_code, job.phase) == ("FAIL", "IMG.1075", "configure")
    assert said in job.fail_reason
    image = fx.image_row(services, job_id)
    assert image.status == "killed" and image.report is not None
    assert list(services.settings.images_dir.glob("*")) == []
    services.db.dispose()


def test_a_data_disk_line_is_commented_out_and_the_image_stored(services: Services) -> None:
    """The fstab fix clears IMG-FSTAB-DATA-DISK, an error: the first check lets it through,
    the check of the result passes, and the stored guest's fstab keeps the line commented."""
    fstab = gf.GOOD_FSTAB + gf.DATA_DISK_LINE + "\n"
    root = {**gf.CLOUD_READY, "etc/fstab": fstab}
    services.editor = TreeEditor("is-config-datadisk", root, {"grub/grub.cfg": gf.READY_GRUB_CFG})
    disk = gf.build_guest(
        "is-config-datadisk", root=root, boot={"grub/grub.cfg": gf.READY_GRUB_CFG}
    )
    job_id = fx.register(services, disk, name="datadisk", is_config=True)
    run_job(services, job_id)
    job = fx.job_row(services, job_id)
    assert (job.status, job.error_code) == ("SUCCESS", None), job.fail_reason
    image = fx.image_row(services, job_id)
    assert image.properties["__is_config_init"] == "true"
    rules = {c["rule"] for c in image.report["configuration"]["changes"]}
    assert "IMG-FSTAB-DATA-DISK" in rules
    with open_guest(_stored(services, job_id)) as guest:
        text = guest.files.read_text("/etc/fstab") or ""
    kept = [line for line in text.splitlines() if gf.DATA_DISK_LINE in line]
    assert kept and all(line.startswith("#") for line in kept), text
