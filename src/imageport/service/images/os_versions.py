"""The ``__os_version`` catalogue: the OS names an image can carry, and the guest-to-name mapping.

The vendor keeps a fixed list of OS version strings (``GET /v1/cloudimages/os_version``); a
request's ``os_version`` must be one of them (else ``IMG.0056``), and the import job replaces it
with the OS it detects in the guest (the vendor's IMS user guide, "Registering an External
Image File as a Private Image": a detected OS overrides the user's choice, and an unknown OS
becomes Other Linux). This module holds that list for the Linux
distributions we import, in the vendor's spelling, and maps what the guest's ``os-release``
says (:class:`imageport.guest.facts.osinfo.OsInfo` ``id`` / ``version_id``) to the best entry.

Each :class:`OsVersion` names the os-release ids it stands for and the release it matches:
``"22.04"`` matches exactly that release, ``"9"`` matches every ``9.x``. The most specific match
wins, so ``centos 7.9`` finds ``CentOS 7.9 64bit`` and ``rocky 9.3`` finds ``Rocky Linux 9.0
64bit``.
"""

from __future__ import annotations

from dataclasses import dataclass

OTHER_LINUX_64 = "Other Linux(64 bit)"
OTHER_LINUX_32 = "Other Linux(32 bit)"
OTHER_PLATFORM = "Other"


@dataclass(frozen=True, slots=True)
class OsVersion:
    """One entry of the ``__os_version`` list."""

    platform: str  #: the vendor's ``__platform`` (``Ubuntu``, ``CentOS`` ... ``Other``)
    os_version: str  #: the exact string clients send and images carry
    bits: int  #: 64 or 32
    ids: tuple[str, ...]  #: os-release ``ID`` values (lower case) this entry stands for
    release: str  #: the release it matches: ``"22.04"`` exactly, or ``"9"`` for all ``9.x``
    os_type: str = "Linux"


def _family(
    platform: str, ids: tuple[str, ...], rows: list[tuple[str, str]], bits: int = 64
) -> list[OsVersion]:
    return [OsVersion(platform, name, bits, ids, release) for release, name in rows]


_ENTRIES: tuple[OsVersion, ...] = (
    *_family(
        "Ubuntu",
        ("ubuntu",),
        [(v, f"Ubuntu {v} server 64bit") for v in ("18.04", "20.04", "22.04", "24.04")],
    ),
    *_family(
        "Debian", ("debian",), [(v, f"Debian GNU/Linux {v}.0.0 64bit") for v in ("10", "11", "12")]
    ),
    *_family(
        "CentOS",
        ("centos",),
        [
            *((f"7.{m}", f"CentOS 7.{m} 64bit") for m in range(10)),
            ("7", "CentOS 7.0 64bit"),
            ("8", "CentOS 8.0 64bit"),
            ("8.2", "CentOS 8.2 64bit"),
            ("9", "CentOS Stream 9 64bit"),
        ],
    ),
    *_family(
        "EulerOS",
        ("euleros",),
        [
            *((f"2.{m}", f"EulerOS 2.{m} 64bit") for m in (2, 3, 5, 8, 9, 10, 11, 12)),
            ("2", "EulerOS 2.5 64bit"),
        ],
    ),
    *_family(
        "openEuler",
        ("openeuler",),
        [
            ("20.03", "openEuler 20.03 64bit"),
            ("22.03", "openEuler 22.03 64bit"),
            ("24.03", "openEuler 24.03 64bit"),
        ],
    ),
    *_family("Rocky", ("rocky",), [("8", "Rocky Linux 8.0 64bit"), ("9", "Rocky Linux 9.0 64bit")]),
    *_family(
        "AlmaLinux", ("almalinux",), [("8", "AlmaLinux 8.0 64bit"), ("9", "AlmaLinux 9.0 64bit")]
    ),
    *_family(
        "Red Hat",
        ("rhel",),
        [
            ("7", "Redhat Linux Enterprise 7.0 64bit"),
            ("8", "Redhat Linux Enterprise 8.0 64bit"),
            ("9", "Redhat Linux Enterprise 9.0 64bit"),
        ],
    ),
    *_family(
        "SUSE",
        ("sles", "sled", "suse"),
        [
            ("12", "SUSE Linux Enterprise Server 12 64bit"),
            ("15", "SUSE Linux Enterprise Server 15 64bit"),
        ],
    ),
    *_family("OpenSUSE", ("opensuse-leap", "opensuse"), [("15", "OpenSUSE 15.0 64bit")]),
    *_family("Fedora", ("fedora",), [(str(v), f"Fedora {v} 64bit") for v in range(35, 41)]),
    OsVersion(OTHER_PLATFORM, OTHER_LINUX_64, 64, (), ""),
    OsVersion(OTHER_PLATFORM, OTHER_LINUX_32, 32, (), ""),
)

_BY_NAME = {entry.os_version: entry for entry in _ENTRIES}


def all_os_versions() -> tuple[OsVersion, ...]:
    """Every entry, grouped by platform in catalogue order."""
    return _ENTRIES


def find(os_version: str) -> OsVersion | None:
    """The entry spelled exactly ``os_version``, or None (a request then gets ``IMG.0056``)."""
    return _BY_NAME.get(os_version)


def platform_of(os_version: str) -> str:
    """The ``__platform`` of ``os_version`` (``"Other"`` for names not in the list)."""
    entry = _BY_NAME.get(os_version)
    return entry.platform if entry else OTHER_PLATFORM


def bits_of(os_version: str) -> int:
    """32 or 64 (64 for names not in the list)."""
    entry = _BY_NAME.get(os_version)
    return entry.bits if entry else 64


def os_version_for(distro_id: str, version: str, bits: int) -> str | None:
    """The best ``__os_version`` for a guest whose os-release says ``ID=distro_id`` and
    ``VERSION_ID=version``, or None when the distribution or release is not in the list (the
    caller then uses :data:`OTHER_LINUX_64` / :data:`OTHER_LINUX_32`).

    An exact release entry (``7.9``) beats a whole-major one (``7``); a release is never
    guessed across majors.
    """
    ident = distro_id.strip().lower()
    release = version.strip()
    if not ident:
        return None
    best: OsVersion | None = None
    for entry in _ENTRIES:
        if ident not in entry.ids or entry.bits != bits:
            continue
        if release == entry.release:
            return entry.os_version
        if release.startswith(entry.release + ".") and (
            best is None or len(entry.release) > len(best.release)
        ):
            best = entry
    return best.os_version if best else None


def os_version_document() -> list[dict[str, object]]:
    """The ``GET /v1/cloudimages/os_version`` body: one group per platform, in catalogue order."""
    groups: dict[str, list[dict[str, object]]] = {}
    seen: set[str] = set()
    for entry in _ENTRIES:
        if entry.os_version in seen:  # a name can match two releases ("7" and "7.0")
            continue
        seen.add(entry.os_version)
        groups.setdefault(entry.platform, []).append(
            {
                "platform": entry.platform,
                "os_version_key": entry.os_version,
                "os_version": entry.os_version,
                "os_bit": entry.bits,
                "os_type": entry.os_type,
            }
        )
    return [{"platform": platform, "version_list": items} for platform, items in groups.items()]
