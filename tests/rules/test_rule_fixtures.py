"""Every rule of the catalogue has a fixture that triggers it and one that does not.

:data:`CASES` names, for each rule, fixtures of the rule tests (the disks their builders make,
checked as ``imageport check`` checks them, or the container facts the container tests
describe). :func:`test_case` runs each through the check and asserts that the rule reports on
it (a warning or an error) or stays silent (notes allowed);
:func:`test_every_rule_has_a_fixture_that_triggers_it_and_one_that_does_not` fails when a rule
of the catalogue lacks either, so that no rule arrives without both. The rule tests assert
what each finding says; these cases assert only that the rule answers at all, or not.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from imageport.findings import Finding, Severity
from imageport.formats.base import Hazard
from imageport.limits import GiB
from imageport.rules.base import CheckOptions
from imageport.rules.catalogue import RULES, rule_by_id
from imageport.rules.engine import run_rules
from imageport.service.tools.check import check_image
from rules import test_accounts_rules as accounts
from rules import test_boot_rules as boot
from rules import test_container_rules as container
from rules import test_fastimport_rules as fast
from rules import test_hardware_binding_rules as hwb
from rules import test_hypervisor_tools_rules as hvt
from rules import test_layout_rules as layout
from rules import test_storage_rules as storage
from support import guest_fixtures as gf
from support import guest_images
from support import kernel_fixtures as kt
from support import network_fixtures as nf

#: A rule's findings on a fixture (the fixture is built or read when it is called).
Findings = Callable[[str], list[Finding]]

FAST = CheckOptions(fast_import=True)


@dataclass(frozen=True)
class Case:
    """One fixture for one rule, and whether the rule must report on it."""

    rule_id: str
    triggers: bool
    #: what the fixture is, for the test's id
    fixture: str
    findings: Findings

    def __str__(self) -> str:
        return f"{self.rule_id}-{'triggers' if self.triggers else 'silent'}-{self.fixture}"


@functools.cache
def _checked(path: Path, options: CheckOptions | None) -> tuple[Finding, ...]:
    """Every finding of the check of ``path`` (each disk is checked once per options)."""
    return check_image(path, options).findings


def disk(
    build: Callable[[], Path], options: CheckOptions | None = None, *, bitmap: bool = False
) -> Findings:
    """The findings of the check of the disk ``build`` makes, with ``options`` (or, with
    ``bitmap``, for fast import with the disk's bitmap file)."""

    def findings(rule_id: str) -> list[Finding]:
        path = build()
        opts = CheckOptions(fast_import=True, bitmap_path=str(fast.bitmap_of(path)))
        return [f for f in _checked(path, opts if bitmap else options) if f.rule_id == rule_id]

    return findings


def facts(options: CheckOptions | None = None, **container_fields: object) -> Findings:
    """The rule's findings on the container facts of the container tests (a 40 GiB qcow2 v3
    with ``container_fields`` changed), no guest."""

    def findings(rule_id: str) -> list[Finding]:
        return list(run_rules((rule_by_id(rule_id),), container.facts(options, **container_fields)))

    return findings


def _base_guest() -> Path:
    return gf.build_guest("base")


def _data_disk_guest() -> Path:
    return gf.synthetic_guest(data_disk=True)


def _unoptimized_zvhd2() -> Path:
    return fast.zvhd2_of(fast.unoptimized_guest())


def _ready_zvhd2() -> Path:
    return fast.zvhd2_of(gf.synthetic_guest())


def _lvm_root_guest() -> Path:
    return guest_images.guest_image("mbr-boot-lvm-xfs")


READY = "cloud-ready-guest"
CLEAN_QCOW2 = facts()

CASES = (
    Case("IMG-FORMAT", True, "gzip-file", facts(format="gzip", variant="gzip", accepted=False)),
    Case("IMG-FORMAT", False, "qcow2", CLEAN_QCOW2),
    Case(
        "IMG-SAFE",
        True,
        "backing-file",
        facts(hazards=(Hazard("backing-file", "backing file '/etc/passwd'"),)),
    ),
    Case("IMG-SAFE", False, "qcow2", CLEAN_QCOW2),
    Case("IMG-QCOW2-ENCRYPTED", True, "luks-qcow2", facts(encryption="luks")),
    Case("IMG-QCOW2-ENCRYPTED", False, "qcow2", CLEAN_QCOW2),
    Case("IMG-SIZE", True, "200-GiB-qcow2", facts(file_size=200 * GiB)),
    Case("IMG-SIZE", False, "128-GiB-qcow2", facts(file_size=128 * GiB)),
    Case("IMG-DISK-SIZE", True, "1025-GiB-disk", facts(virtual_size=1025 * GiB)),
    Case(
        "IMG-DISK-SIZE",
        False,
        "40-GiB-and-a-byte-min-disk-41",
        facts(CheckOptions(min_disk_gib=41), virtual_size=40 * GiB + 1),
    ),
    Case("IMG-SYSTEM-DISK", True, "empty-disk", disk(gf.empty_disk)),
    Case("IMG-SYSTEM-DISK", False, READY, disk(gf.synthetic_guest)),
    Case("IMG-FAST-RAW", True, "raw-without-bitmap", disk(gf.synthetic_guest, FAST)),
    Case("IMG-FAST-RAW", False, "raw-with-its-bitmap", disk(gf.synthetic_guest, bitmap=True)),
    Case("IMG-FAST-ZVHD2", True, "zvhd2-unoptimized", disk(_unoptimized_zvhd2, FAST)),
    Case("IMG-FAST-ZVHD2", False, "zvhd2-cloud-ready", disk(_ready_zvhd2, FAST)),
    Case("IMG-FSTAB-DATA-DISK", True, "data-disk-in-fstab", disk(_data_disk_guest)),
    Case("IMG-FSTAB-DATA-DISK", False, READY, disk(gf.synthetic_guest)),
    Case("IMG-FSTAB-UUID", True, "device-names", disk(layout.device_names_guest)),
    Case("IMG-FSTAB-UUID", False, READY, disk(gf.synthetic_guest)),
    Case("IMG-BOOT-MODE", True, "uefi-only", disk(boot.uefi_only_guest)),
    Case(
        "IMG-BOOT-MODE",
        False,
        "uefi-only-registered-uefi",
        disk(boot.uefi_only_guest, CheckOptions(uefi=True)),
    ),
    Case("IMG-BOOT-SAME-DISK", True, "root-on-vdb1", disk(boot.root_on_another_disk)),
    Case("IMG-BOOT-SAME-DISK", False, "root-on-vda3", disk(boot.root_on_vda3)),
    Case("IMG-CONSOLE", True, "no-serial-console", disk(boot.without_serial_console)),
    Case("IMG-CONSOLE", False, READY, disk(gf.synthetic_guest)),
    Case("IMG-LOGIN", True, "no-way-in", disk(accounts.no_login)),
    Case("IMG-LOGIN", False, "cloud-init-only", disk(accounts.cloud_init_only)),
    Case("IMG-ROOT-PASSWORD", True, "locked-root", disk(accounts.locked_root_with_keys)),
    Case("IMG-ROOT-PASSWORD", False, "strong-root-password", disk(accounts.strong_root)),
    Case("IMG-PASSWORD-STRENGTH", True, "weak-root-password", disk(accounts.weak_root)),
    Case("IMG-PASSWORD-STRENGTH", False, "strong-root-password", disk(accounts.strong_root)),
    Case("IMG-DRIVERS", True, "no-virtio", disk(kt.novirtio_guest)),
    Case("IMG-DRIVERS", False, "every-driver", disk(kt.good_guest)),
    Case("IMG-DRIVERS", True, "no-ide-driver", disk(lambda: kt.ide_guest("missing"))),
    Case("IMG-DRIVERS", False, "ide-driver-in-initrd", disk(lambda: kt.ide_guest("initrd"))),
    Case("IMG-FULL-VIRT", True, "xen-i386", disk(kt.xen_guest)),
    Case("IMG-FULL-VIRT", False, "every-driver", disk(kt.good_guest)),
    Case(
        "IMG-ARCH",
        True,
        "x86_64-declared-arm",
        disk(kt.good_guest, CheckOptions(architecture="arm")),
    ),
    Case(
        "IMG-ARCH",
        False,
        "x86_64-declared-x86",
        disk(kt.good_guest, CheckOptions(architecture="x86")),
    ),
    Case("IMG-NET-RULES", True, "persistent-net-rules", disk(kt.novirtio_guest)),
    Case("IMG-NET-RULES", False, "empty-generator-rules", disk(kt.builtin_guest)),
    Case("IMG-CLOUD-INIT", True, "no-cloud-init", disk(_base_guest)),
    Case("IMG-CLOUD-INIT", False, "vendor-configuration", disk(nf.debian_good)),
    Case("IMG-NET-DHCP", True, "static-addresses", disk(nf.debian_static)),
    Case("IMG-NET-DHCP", False, "dhcp", disk(nf.debian_good)),
    Case("IMG-HW-BINDING", True, "mac-bindings", disk(nf.debian_static)),
    Case("IMG-HW-BINDING", False, "dhcp", disk(nf.debian_good)),
    Case("IMG-HW-BINDING", True, "by-id-and-by-path-disks", disk(hwb.disk_ids_guest)),
    Case("IMG-HW-BINDING", False, READY, disk(gf.synthetic_guest)),
    Case("IMG-HYPERVISOR-TOOLS", True, "open-vm-tools", disk(hvt.vmware_debian_guest)),
    Case("IMG-HYPERVISOR-TOOLS", False, READY, disk(gf.synthetic_guest)),
    Case("IMG-LVM-INJECTION", True, "debian-lvm-root", disk(_lvm_root_guest)),
    Case("IMG-LVM-INJECTION", False, READY, disk(gf.synthetic_guest)),
    Case("IMG-DISK-ENCRYPTION", True, "luks-and-crypttab", disk(storage.luks_guest)),
    Case("IMG-DISK-ENCRYPTION", False, READY, disk(gf.synthetic_guest)),
    Case("IMG-OEM", True, "oem-release", disk(storage.oem_guest)),
    Case("IMG-OEM", False, READY, disk(gf.synthetic_guest)),
)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_case(case: Case) -> None:
    reported = [f for f in case.findings(case.rule_id) if f.severity is not Severity.INFO]
    if case.triggers:
        assert reported, f"{case.rule_id} says nothing about {case.fixture}"
    else:
        assert not reported, f"{case.rule_id} reports on {case.fixture}: {reported}"


def test_every_rule_has_a_fixture_that_triggers_it_and_one_that_does_not() -> None:
    covered = {(case.rule_id, case.triggers) for case in CASES}
    missing = [
        f"{rule.id} has no case that {'triggers it' if triggers else 'it stays silent on'}"
        for rule in RULES
        for triggers in (True, False)
        if (rule.id, triggers) not in covered
    ]
    assert not missing, "add them to CASES in this module:\n" + "\n".join(missing)
    unknown = {case.rule_id for case in CASES} - {rule.id for rule in RULES}
    assert not unknown, f"CASES names rules the catalogue does not have: {sorted(unknown)}"
