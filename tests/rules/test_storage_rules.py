"""IMG-LVM-INJECTION, IMG-DISK-ENCRYPTION and IMG-OEM on synthetic and real guest disks."""

from __future__ import annotations

import uuid
from pathlib import Path

from imageport.findings import Severity
from imageport.service.tools.check import check_image
from support import guest_fixtures as gf
from support import guest_images


def messages(path: Path, rule_id: str) -> list[str]:
    return [
        f"{f.severity.value}: {f.message} | " + " | ".join(f.evidence)
        for f in check_image(path).findings
        if f.rule_id == rule_id
    ]


def luks2_header() -> bytes:
    head = bytearray(4096)
    head[0:6] = b"LUKS\xba\xbe"
    head[6:8] = (2).to_bytes(2, "big")
    head[168:204] = str(uuid.UUID(int=7)).encode()
    return bytes(head)


def test_no_storage_rule_fires_on_a_plain_guest() -> None:
    report = check_image(gf.synthetic_guest())
    assert not [
        f
        for f in report.findings
        if f.rule_id in ("IMG-LVM-INJECTION", "IMG-DISK-ENCRYPTION", "IMG-OEM")
    ]


def luks_guest() -> Path:
    """A LUKS2 partition (in place of the ESP) and a crypttab that opens it at boot."""
    return gf.build_guest(
        "luks",
        with_esp=False,
        part2=luks2_header(),
        fstab=gf.GOOD_FSTAB.replace("UUID=1234-ABCD /boot/efi vfat umask=0077 0 1\n", ""),
        root={
            "etc/crypttab": "# <target> <source> <key> <options>\n"
            "cryptdata UUID=00000000-0000-0000-0000-000000000007 none luks\n"
            "cryptswap /dev/vda9 /dev/urandom swap,noauto\n"
        },
    )


def oem_guest() -> Path:
    """An OEM release file and an os-release whose VARIANT says OEM."""
    return gf.build_guest(
        "oem",
        root={
            "etc/oem-release": "OEM build 42\n",
            "usr/lib/os-release": gf.OS_RELEASE + 'VARIANT="OEM"\n',
        },
    )


def test_a_luks_partition_and_a_crypttab_line_are_reported() -> None:
    found = messages(luks_guest(), "IMG-DISK-ENCRYPTION")
    assert found == [
        "warning: part2 is an encrypted luks2 volume. | "
        "part2: luks UUID=00000000-0000-0000-0000-000000000007",
        "warning: /etc/crypttab line 2 opens the encrypted device "
        "UUID=00000000-0000-0000-0000-000000000007 as cryptdata at boot. | /etc/crypttab:2: "
        "cryptdata UUID=00000000-0000-0000-0000-000000000007 none luks",
    ]


def test_oem_markers_are_errors() -> None:
    found = messages(oem_guest(), "IMG-OEM")
    assert len(found) == 2 and all(m.startswith("error:") for m in found)
    assert "/etc/oem-release" in found[0] and "VARIANT=OEM" in found[1]


def test_an_lvm_root_is_a_warning_on_the_real_debian_image() -> None:
    image = guest_images.guest_image("mbr-boot-lvm-xfs")
    report = check_image(image)
    (finding,) = [f for f in report.findings if f.rule_id == "IMG-LVM-INJECTION"]
    assert finding.severity is Severity.WARNING
    assert finding.evidence == ("root: vg0/root (xfs)",)
