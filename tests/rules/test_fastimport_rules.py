"""IMG-FAST-RAW and IMG-FAST-ZVHD2 through the whole check, on synthetic guest disks: an
optimized guest passes as RAW (with its bitmap file) and as ZVHD2; an unoptimized one fails
naming each unmet rule; other formats, missing, damaged and stale bitmaps are refused; the CLI
finds the bitmap beside the image, and the worker passes the bitmap path through."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from imageport.adapters.image_worker import SubprocessImageWorker
from imageport.cli.main import main as cli_main
from imageport.disk.raw import RawDisk
from imageport.fastimport import bitmap as mf
from imageport.fastimport import zvhd_writer as zw
from imageport.findings import Finding, Severity
from imageport.reports.json_report import report_document
from imageport.reports.text_report import render_text
from imageport.rules import fastimport
from imageport.rules.base import CheckOptions
from imageport.rules.catalogue import rule_by_id
from imageport.rules.kernel import DriversRule
from imageport.service.tools.check import CheckReport, check_image
from imageport.settings import load_settings
from imageport.source import FileSource
from imageport.worker import inspect_image
from support import builders
from support import guest_fixtures as gf
from support import kernel_fixtures as kt
from support import network_fixtures as nf

MiB = 1 << 20
BS = 2 * MiB

#: What the unoptimized guest gets wrong: every rule of the optimization set.
UNMET = {
    "IMG-DRIVERS",
    "IMG-NET-RULES",
    "IMG-NET-DHCP",
    "IMG-HW-BINDING",
    "IMG-FSTAB-DATA-DISK",
    "IMG-FSTAB-UUID",
    "IMG-CLOUD-INIT",
    "IMG-CONSOLE",
}
#: A grub.cfg from a machine made elsewhere: root by device name, no serial console.
PLAIN_GRUB_CFG = f"""set default=0
menuentry 'Debian GNU/Linux' {{
    linux /vmlinuz-{kt.DEB} root=/dev/sda3 ro quiet
    initrd /initrd.img-{kt.DEB}
}}
"""


def unoptimized_guest() -> Path:
    """A Debian guest exported from VMware and never prepared: an initrd without virtio (and
    no kernel config showing it built in), persistent-net rules, a static address bound to a
    MAC, a data disk in fstab, root= by device name, no serial console, no cloud-init."""
    initrd = kt.make_initrd(
        "fast-unopt-v1", kt.modules_tree(kt.DEB, {**kt.XEN_KOS, **kt.OTHER_KOS}), kt.GZIP
    )
    return gf.build_guest(
        "fast-unopt",
        root={
            "etc/udev/rules.d/70-persistent-net.rules": kt.NET_RULES,
            "etc/network/interfaces": nf.DEB_STATIC_INTERFACES,
            "etc/shadow": "root:*:19700:0:99999:7:::\n",
        },
        boot={
            f"config-{kt.DEB}": None,
            f"initrd.img-{kt.DEB}": initrd,
            "grub/grub.cfg": PLAIN_GRUB_CFG,
        },
        fstab=gf.GOOD_FSTAB + gf.DATA_DISK_LINE + "\n",
    )


def zvhd2_of(raw: Path) -> Path:
    """The ZVHD2 of a cached guest, written by the production writer (cached beside it)."""
    final = builders.cached(raw.name.replace(".raw", ".zvhd2"))
    if not final.exists():
        with FileSource(raw) as src:
            zw.write_zvhd2(RawDisk(src), final, zw.WriterOptions(timestamp=0, uuid=bytes(16)))
    return final


def bitmap_of(raw: Path) -> Path:
    """The bitmap file of a cached RAW guest, made once into the cache (``<stem>-bitmap.mf``,
    a name the CLI never looks for beside the image)."""
    final = raw.with_name(f"{raw.stem}-bitmap.mf")
    if not final.exists():
        tmp = final.with_name(f"{final.name}.{os.getpid()}.tmp")
        mf.write_bitmap(mf.build_bitmap(raw), tmp)
        os.replace(tmp, final)
    return final


def sparse_copy(src: Path, dst: Path) -> Path:
    subprocess.run(["cp", "--sparse=always", str(src), str(dst)], check=True)
    return dst


def with_bitmap(directory: Path, guest: Path, name: str = "disk") -> tuple[Path, Path]:
    """A copy of ``guest`` as ``directory/name.raw`` and its bitmap ``name.mf`` beside it."""
    raw = sparse_copy(guest, directory / f"{name}.raw")
    mf.write_bitmap(mf.build_bitmap(raw), directory / f"{name}.mf")
    return raw, directory / f"{name}.mf"


def check(path: Path, bitmap: Path | None = None, *, fast: bool = True) -> CheckReport:
    return check_image(
        path, CheckOptions(fast_import=fast, bitmap_path=None if bitmap is None else str(bitmap))
    )


def of(report: CheckReport, rule_id: str) -> list[Finding]:
    return [f for f in report.findings if f.rule_id == rule_id]


def named(findings: list[Finding]) -> set[str]:
    """The unmet rules a list of IMG-FAST-* findings names."""
    return {f.message.split(" is not met", 1)[0] for f in findings if " is not met" in f.message}


@pytest.fixture(scope="module")
def ready(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return with_bitmap(tmp_path_factory.mktemp("ready"), gf.synthetic_guest())


@pytest.fixture(scope="module")
def unopt(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return with_bitmap(tmp_path_factory.mktemp("unopt"), unoptimized_guest())


# --- optimized and not ----------------------------------------------------------------------


def test_an_optimized_raw_with_its_bitmap_passes(ready: tuple[Path, Path]) -> None:
    raw, bitmap = ready
    report = check(raw, bitmap)
    assert report.passed, render_text(report)
    assert not of(report, "IMG-FAST-RAW") and not of(report, "IMG-FAST-ZVHD2")
    assert report.bitmap is not None and report.bitmap.ok
    assert report.bitmap.block_count == raw.stat().st_size // BS
    doc = report_document(report)["bitmap"]
    assert doc["matches"] is True and doc["origin"] == "given" and doc["path"] == str(bitmap)
    assert doc["blocks_checked"] > 0 and doc["problems"] == []
    assert "matches;" in render_text(report)


def test_an_unoptimized_guest_fails_naming_every_unmet_rule(unopt: tuple[Path, Path]) -> None:
    raw, bitmap = unopt
    report = check(raw, bitmap)
    fast = of(report, "IMG-FAST-RAW")
    assert named(fast) == UNMET, [f.message for f in fast]
    assert len(fast) == len(UNMET)  # one finding per unmet rule; the bitmap itself matches
    assert all(f.severity is Severity.ERROR for f in fast)
    # each quotes the rule's own message and advice, and says why fast import cares
    for f in fast:
        rule_id = f.message.split(" ", 1)[0]
        own = of(report, rule_id)[0]
        assert own.message in f.message and f.advice == own.advice
        assert "fast import changes nothing in the guest" in f.message
    # warnings of the optimization rules (persistent-net rules...) become errors here
    assert of(report, "IMG-NET-RULES")[0].severity is Severity.WARNING
    # the first error, which the import job reports as its code, is the fast-import rule
    errors = [f for f in report.findings if f.severity is Severity.ERROR]
    assert errors[0].rule_id == "IMG-FAST-RAW"
    text = render_text(report)
    assert "IMG-CLOUD-INIT is not met" in text and "cloud-init is not installed" in text


def test_zvhd2_of_an_optimized_guest_passes_and_of_another_fails() -> None:
    good = check(zvhd2_of(gf.synthetic_guest()))
    assert good.container.format == "zvhd2"
    assert good.passed, render_text(good)
    assert good.bitmap is None
    bad = check(zvhd2_of(unoptimized_guest()))
    fast = of(bad, "IMG-FAST-ZVHD2")
    assert named(fast) == UNMET and len(fast) == len(UNMET)
    assert not of(bad, "IMG-FAST-RAW")  # a ZVHD2 needs no bitmap file
    assert next(f.rule_id for f in bad.findings if f.severity is Severity.ERROR) == "IMG-FAST-ZVHD2"


def test_without_fast_import_the_fast_rules_say_nothing(unopt: tuple[Path, Path]) -> None:
    for path in (unopt[0], zvhd2_of(unoptimized_guest())):
        report = check(path, fast=False)
        assert not of(report, "IMG-FAST-RAW") and not of(report, "IMG-FAST-ZVHD2")
        assert report.bitmap is None


def test_other_formats_are_refused_for_fast_import(tmp_path: Path) -> None:
    qcow2 = tmp_path / "disk.qcow2"
    builders.qemu_img("convert", "-f", "raw", "-O", "qcow2", str(gf.synthetic_guest()), str(qcow2))
    report = check(qcow2)
    (f,) = of(report, "IMG-FAST-RAW")
    assert f.message == ("Fast import takes RAW (with a bitmap file) or ZVHD2; this file is qcow2.")
    assert "imageport convert IN OUT.zvhd2" in f.advice
    assert "detected format: qcow2 (v3)" in f.evidence
    assert report.bitmap is None
    # the same guest without fast import passes: only the format is wrong for fast import
    assert check(qcow2, fast=False).passed


def test_no_system_disk_cannot_be_confirmed_optimized(tmp_path: Path) -> None:
    raw = sparse_copy(gf.empty_disk(), tmp_path / "empty.raw")
    mf.write_bitmap(mf.build_bitmap(raw), tmp_path / "empty.mf")
    report = check(raw, tmp_path / "empty.mf")
    (f,) = of(report, "IMG-FAST-RAW")
    assert "cannot be confirmed to be optimized" in f.message
    assert of(report, "IMG-SYSTEM-DISK")


# --- the bitmap file ------------------------------------------------------------------------


def _corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # a bit of the bitmap: its SHA-256 no longer matches
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:50])


def _newer_version(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[8:10] = (7).to_bytes(2, "little")
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (_corrupt, "bitmap checksum (SHA-256) does not match its bitmap"),
        (_truncate, "is 50 bytes long, shorter than its 96-byte header"),
        (_newer_version, "has version 7; this imageport reads version 1"),
    ],
)
def test_a_damaged_bitmap_fails_with_the_parsers_message(
    tmp_path: Path, ready: tuple[Path, Path], damage: Callable[[Path], object], expected: str
) -> None:
    bitmap = tmp_path / "disk.mf"
    bitmap.write_bytes(ready[1].read_bytes())
    damage(bitmap)
    report = check(ready[0], bitmap)
    (f,) = of(report, "IMG-FAST-RAW")
    assert f.message == f"The bitmap file {bitmap} does not match this RAW image: {expected}"
    assert f"imageport bitmap IMAGE -o {bitmap}" in f.advice
    assert report.bitmap is not None and not report.bitmap.ok
    assert report_document(report)["bitmap"]["matches"] is False


def test_a_missing_bitmap_file_is_a_finding_not_a_crash(
    ready: tuple[Path, Path], tmp_path: Path
) -> None:
    missing = tmp_path / "nothing.mf"
    report = check(ready[0], missing)
    (f,) = of(report, "IMG-FAST-RAW")
    assert "the bitmap file cannot be checked" in f.message and str(missing) in f.message
    (f,) = of(check(ready[0]), "IMG-FAST-RAW")
    assert f.message.startswith("No bitmap file was given")
    assert "imageport bitmap disk.raw" in f.advice


def test_a_bitmap_of_another_image_or_made_before_a_change_fails(
    tmp_path: Path, ready: tuple[Path, Path], unopt: tuple[Path, Path]
) -> None:
    # another image of another size
    other = tmp_path / "other.raw"
    with open(other, "wb") as out:
        out.truncate(64 * MiB)
    mf.write_bitmap(mf.build_bitmap(other), tmp_path / "other.mf")
    (wrong,) = of(check(ready[0], tmp_path / "other.mf"), "IMG-FAST-RAW")
    assert "describes an image of 67108864 bytes" in wrong.message
    # the same image, written to after its bitmap was made (in free space past the partitions)
    raw, bitmap = with_bitmap(tmp_path, gf.synthetic_guest(), "stale")
    block = 120 * MiB // BS
    assert not mf.read_bitmap(bitmap).is_set(block)
    with open(raw, "r+b") as out:
        out.seek(block * BS + 4096)
        out.write(b"written after the bitmap")
    report = check(raw, bitmap)
    (f,) = of(report, "IMG-FAST-RAW")
    assert (
        f"block {block} (bytes {block * BS}..{(block + 1) * BS - 1}) holds data but the "
        "bitmap marks it empty" in f.message
    )
    assert not report.passed
    # the unoptimized guest's bitmap is fine; the ready one's does not fit the other guest
    assert report_document(check(*unopt))["bitmap"]["matches"] is True


# --- units ----------------------------------------------------------------------------------


def test_the_optimization_rules_are_the_catalogues_instances() -> None:
    rules = fastimport.optimization_rules()
    assert [r.id for r in rules] == list(fastimport.OPTIMIZATION_RULE_IDS)
    assert set(fastimport.OPTIMIZATION_RULE_IDS) == UNMET
    assert all(r is rule_by_id(r.id) for r in rules)


def _crash(self: DriversRule, facts: object) -> Iterator[Finding]:
    raise RuntimeError("boom")


def _note(self: DriversRule, facts: object) -> Iterator[Finding]:
    yield self.found("only a note", severity=Severity.INFO)


def test_a_crashing_rule_is_unmet_and_a_note_is_not(
    monkeypatch: pytest.MonkeyPatch, ready: tuple[Path, Path]
) -> None:
    monkeypatch.setattr(DriversRule, "check", _crash)
    fast = of(check(*ready), "IMG-FAST-RAW")
    assert named(fast) == {"IMG-DRIVERS"}
    assert "could not be completed (RuntimeError: boom)" in fast[0].message
    monkeypatch.setattr(DriversRule, "check", _note)
    assert of(check(*ready), "IMG-FAST-RAW") == []


# --- CLI and worker -------------------------------------------------------------------------


def test_cli_uses_the_bitmap_beside_the_image(
    ready: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw, bitmap = ready
    assert cli_main(["check", str(raw), "--fast-import", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["bitmap"]["origin"] == "beside" and doc["bitmap"]["path"] == str(bitmap)
    assert cli_main(["check", str(raw), "--fast-import"]) == 0
    assert f"{bitmap} (found beside the image): matches" in capsys.readouterr().out
    # none beside: fast import fails for want of a bitmap; --bitmap names one elsewhere
    lone = sparse_copy(raw, tmp_path / "lone.raw")
    assert cli_main(["check", str(lone), "--fast-import"]) == 1
    assert "No bitmap file was given" in capsys.readouterr().out
    assert cli_main(["check", str(lone), "--fast-import", "--bitmap", str(bitmap), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["bitmap"]["origin"] == "given"
    assert cli_main(["check", str(lone), "--bitmap", str(bitmap)]) == 2
    assert "--bitmap is for fast import" in capsys.readouterr().err


def test_worker_and_converter_pass_the_bitmap_path(
    ready: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw, bitmap = ready
    opts = json.dumps({"fast_import": True, "bitmap_path": str(bitmap)})
    assert inspect_image.main([str(raw), "--options", opts]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["report"]["bitmap"]["matches"] is True
    assert inspect_image.main([str(raw), "--options", '{"bitmap_path": 5}']) == 2
    assert "bitmap_path must be a string" in capsys.readouterr().err
    converter = SubprocessImageWorker(load_settings({}, data_dir=tmp_path / "d"))
    found = converter.inspect(
        raw, CheckOptions(fast_import=True, bitmap_path=str(bitmap)), cancelled=lambda: False
    )
    assert found.report is not None and found.report["bitmap"]["path"] == str(bitmap)
    assert found.failures == ()
    found = converter.inspect(raw, CheckOptions(fast_import=True), cancelled=lambda: False)
    assert found.failures[0][0] == "IMG-FAST-RAW"
