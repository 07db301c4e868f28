"""The distribution inside the guest, from ``os-release`` with fallbacks for older systems."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from imageport.errors import ImageportError
from imageport.guest.files.mounts import GuestFiles

_MAX_RELEASE_BYTES = 64 << 10
#: Release files of systems without os-release, and the distribution id each implies.
_FALLBACKS = (
    ("/etc/redhat-release", "rhel"),
    ("/etc/centos-release", "centos"),
    ("/etc/openEuler-release", "openEuler"),
    ("/etc/euleros-release", "euleros"),
    ("/etc/kylin-release", "kylin"),
    ("/etc/UnionTech-release", "uos"),
    ("/etc/SuSE-release", "sles"),
    ("/etc/debian_version", "debian"),
)
_VERSION = re.compile(r"(\d+(?:\.\d+)*)")


@dataclass(frozen=True, slots=True)
class OsInfo:
    """What the guest says it is."""

    id: str  #: ``debian``, ``ubuntu``, ``centos``, ``rhel``, ``openEuler`` ...
    version_id: str
    pretty_name: str
    id_like: tuple[str, ...]
    source: str  #: the file it was read from
    variant: str = ""  #: os-release ``VARIANT`` (``Server``, ``Cloud Edition`` ...)

    @property
    def family(self) -> str:
        """``debian``, ``rhel``, ``suse`` or the id itself."""
        ids = (self.id, *self.id_like)
        for family, members in (
            ("debian", ("debian", "ubuntu")),
            ("rhel", ("rhel", "fedora", "centos", "openEuler", "euleros")),
            ("suse", ("suse", "sles", "opensuse")),
        ):
            if any(i in members for i in ids):
                return family
        return self.id


def parse_os_release(text: str) -> dict[str, str]:
    """``KEY=value`` pairs of an os-release file (shell quoting undone)."""
    values: dict[str, str] = {}
    for line in text.splitlines()[:1000]:
        key, sep, raw = line.strip().partition("=")
        if not sep or not key.isidentifier():
            continue
        try:
            parts = shlex.split(raw)
        except ValueError:
            parts = [raw.strip("\"'")]
        values[key] = parts[0] if parts else ""
    return values


def read_os_info(files: GuestFiles, problems: list[str] | None = None) -> OsInfo | None:
    """The guest's OS identity, or None when no release file is found. A release file that
    exists but cannot be read (a dangling symbolic link, a loop, a directory, too large) is
    skipped, as the guest's own tools skip it, and named in ``problems``."""
    problems = [] if problems is None else problems

    def _read(files: GuestFiles, path: str) -> str | None:
        try:
            return files.read_text(path, _MAX_RELEASE_BYTES)
        except ImageportError as exc:
            problems.append(f"{path}: {exc}")
            return None

    for path in ("/etc/os-release", "/usr/lib/os-release"):
        text = _read(files, path)
        if text:
            v = parse_os_release(text)
            if "ID" in v or "NAME" in v:
                return OsInfo(
                    id=v.get("ID", "linux"),
                    version_id=v.get("VERSION_ID", ""),
                    pretty_name=v.get("PRETTY_NAME") or v.get("NAME", ""),
                    id_like=tuple(v.get("ID_LIKE", "").split()),
                    source=path,
                    variant=v.get("VARIANT", ""),
                )
    lsb = _read(files, "/etc/lsb-release")
    if lsb:
        v = parse_os_release(lsb)
        if "DISTRIB_ID" in v:
            return OsInfo(
                id=v["DISTRIB_ID"].lower(),
                version_id=v.get("DISTRIB_RELEASE", ""),
                pretty_name=v.get("DISTRIB_DESCRIPTION", v["DISTRIB_ID"]),
                id_like=(),
                source="/etc/lsb-release",
            )
    for path, distro in _FALLBACKS:
        text = _read(files, path)
        if text:
            first = text.strip().splitlines()[0] if text.strip() else distro
            m = _VERSION.search(first)
            return OsInfo(distro, m.group(1) if m else "", first, (), path)
    return None
