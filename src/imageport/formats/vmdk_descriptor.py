"""The VMDK text descriptor: its grammar, and which of its lines point outside the file.

A VMDK disk is described by a small text file (or the same text embedded in a hosted sparse
extent at ``descriptorOffset``)::

    # Disk DescriptorFile
    version=1
    CID=2d14e1f9
    parentCID=ffffffff
    createType="monolithicSparse"

    # Extent description
    RW 20480 SPARSE "disk.vmdk"
    RW 20480 FLAT "disk-flat.vmdk" 0

    # The Disk Data Base
    ddb.adapterType = "ide"

Layout learned from VMware's "Virtual Disk Format 5.0" technote and from qemu's
``block/vmdk.c`` (``vmdk_parse_extents``, ``vmdk_parent_open``, ``vmdk_probe``).

Every extent line names a file (or none, for ``ZERO``); ``parentFileNameHint`` names the parent
of a delta disk. None of these paths is ever opened here: :func:`extent_hazards` turns them into
:class:`~imageport.formats.base.Hazard` records. qemu finds ``parentFileNameHint`` with a plain
substring search over the first 10 KiB of the descriptor, even inside a comment, so
:func:`raw_parent_hint` does the same search to catch a hint that the line grammar would miss.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from imageport import limits
from imageport.errors import CorruptImageError
from imageport.formats.base import Hazard

#: The first line VMware and qemu write.
SIGNATURE = b"# Disk DescriptorFile"

#: Bytes of descriptor text qemu searches for ``parentFileNameHint`` and the CIDs.
QEMU_DESC_SCAN_BYTES = 20 * 512

#: The parentCID of a disk that has no parent.
NO_PARENT_CID = "ffffffff"

#: Extent types whose data lives in another file (all but ZERO).
_ACCESS_MODES = ("RW", "RDONLY", "NOACCESS")
_EXTENT_LINE = re.compile(
    r"""^(?P<access>RW|RDONLY|NOACCESS)[ \t]+(?P<sectors>\d{1,20})[ \t]+(?P<type>[A-Za-z]{1,16})
        (?:[ \t]+"(?P<file>[^"\r\n]*)"(?:[ \t]+(?P<offset>\d{1,20}))?)?[ \t]*$""",
    re.VERBOSE,
)
_KEY_VALUE = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z0-9_.]*)[ \t]*=[ \t]*(?P<value>.*)$")


@dataclass(frozen=True, slots=True)
class ExtentLine:
    """One extent line: ``ACCESS SECTORS TYPE ["FILE" [OFFSET]]``."""

    access: str
    sectors: int
    type: str
    filename: str | None
    offset: int | None

    def describe(self) -> str:
        where = f' "{self.filename}"' if self.filename is not None else ""
        at = f" at sector {self.offset}" if self.offset is not None else ""
        return f"{self.access} {self.type} extent{where}{at} ({self.sectors} sectors)"


@dataclass(frozen=True, slots=True)
class Descriptor:
    """A parsed descriptor: its settings (``key=value`` lines) and its extent lines.

    ``suspicious_lines`` holds lines that look like extent lines (they start with an access
    mode or quote a name) but do not follow the grammar; they are refused like extents, since
    a laxer parser elsewhere might still open what they name.
    """

    settings: dict[str, str]
    extents: tuple[ExtentLine, ...]
    suspicious_lines: tuple[str, ...]

    def get(self, key: str) -> str | None:
        """The value of ``key`` with surrounding quotes removed, or None."""
        value = self.settings.get(key)
        if value is None:
            return None
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        return value

    @property
    def create_type(self) -> str | None:
        return self.get("createType")

    @property
    def parent_cid(self) -> str | None:
        return self.get("parentCID")

    @property
    def parent_hint(self) -> str | None:
        return self.get("parentFileNameHint")

    @property
    def total_sectors(self) -> int:
        return sum(e.sectors for e in self.extents)


def decode_text(data: bytes) -> str:
    """Descriptor bytes up to the first NUL, as text (invalid bytes are replaced)."""
    end = data.find(b"\0")
    if end >= 0:
        data = data[:end]
    return data.decode("utf-8", errors="replace")


def parse(data: bytes) -> Descriptor:
    """Parse descriptor text; raises :class:`CorruptImageError` on a non-text descriptor."""
    limits.cap(len(data), limits.MAX_DESCRIPTOR_BYTES, "VMDK descriptor size")
    text = decode_text(data)
    settings: dict[str, str] = {}
    extents: list[ExtentLine] = []
    suspicious: list[str] = []
    for raw_line in text.split("\n"):
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        match = _EXTENT_LINE.match(line)
        if match is not None:
            if len(extents) >= limits.MAX_EXTENTS:
                limits.cap(len(extents) + 1, limits.MAX_EXTENTS, "VMDK extent lines")
            extents.append(_extent(match))
            continue
        kv = _KEY_VALUE.match(line)
        if kv is not None:
            settings.setdefault(kv.group("key"), kv.group("value"))
            continue
        first = line.split(None, 1)[0]
        if first in _ACCESS_MODES or '"' in line:
            suspicious.append(line[:200])
    return Descriptor(settings=settings, extents=tuple(extents), suspicious_lines=tuple(suspicious))


def _extent(match: re.Match[str]) -> ExtentLine:
    offset = match.group("offset")
    return ExtentLine(
        access=match.group("access"),
        sectors=int(match.group("sectors")),
        type=match.group("type").upper(),
        filename=match.group("file"),
        offset=int(offset) if offset is not None else None,
    )


def is_plain_name(name: str) -> bool:
    """True for a bare file name: no directory part, not absolute, not ``.``/``..``."""
    return bool(name) and not any(c in name for c in "/\\:") and name not in (".", "..")


def raw_parent_hint(region: bytes) -> str | None:
    """The ``parentFileNameHint`` qemu would find by substring search in ``region``.

    Returns the quoted name (or the text after the key when no quote closes it), or None when
    the key does not occur at all.
    """
    key = b"parentFileNameHint"
    end = region.find(b"\0")
    if end >= 0:
        region = region[:end]
    pos = region.find(key)
    if pos < 0:
        return None
    rest = region[pos + len(key) : pos + len(key) + 600]
    text = rest.decode("utf-8", errors="replace").lstrip(" \t=")
    if text.startswith('"'):
        name, _, _ = text[1:].partition('"')
        return name
    return text.split("\n", 1)[0].strip()


def parent_hazards(desc: Descriptor, region: bytes) -> list[Hazard]:
    """Hazards for a delta link: a parent file name hint, or a parentCID other than none."""
    hazards: list[Hazard] = []
    hint = desc.parent_hint
    if hint is None:
        hint = raw_parent_hint(region)
    if hint is not None:
        hazards.append(
            Hazard(
                "backing-file", f'the descriptor names a parent disk: parentFileNameHint="{hint}"'
            )
        )
    cid = desc.parent_cid
    if cid is not None and cid.lower() != NO_PARENT_CID:
        hazards.append(
            Hazard(
                "backing-file", f"the descriptor is a delta link: parentCID={cid} (not ffffffff)"
            )
        )
    return hazards


def extent_hazards(desc: Descriptor, *, embedded_self: bool) -> list[Hazard]:
    """Hazards for every extent that is not this very file.

    With ``embedded_self`` (the descriptor is embedded in a hosted sparse extent that holds the
    data itself), exactly one ``SPARSE`` extent with a bare file name stands for this file, as
    qemu reads it; anything else (a FLAT/VMFS/other extent, a second extent, a path) names data
    outside the file. For a descriptor-only file every named extent is another file.
    """
    hazards: list[Hazard] = []
    extents = desc.extents
    if embedded_self and len(extents) == 1 and not desc.suspicious_lines:
        only = extents[0]
        if only.type == "SPARSE" and only.filename is not None and is_plain_name(only.filename):
            return []
    many = f" (the descriptor lists {len(extents)} extents)" if len(extents) > 1 else ""
    for extent in extents:
        if extent.filename is None:
            if embedded_self:
                hazards.append(
                    Hazard(
                        "external-extent", f"{extent.describe()} in an embedded descriptor{many}"
                    )
                )
            continue
        name = extent.filename
        if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
            kind = "an absolute path"
        elif is_plain_name(name):
            kind = "a sibling file"
        else:
            kind = "a relative path"
        hazards.append(Hazard("external-extent", f"{extent.describe()} names {kind}{many}"))
    hazards.extend(
        Hazard("external-extent", f"unparsed extent-like descriptor line: {line!r}")
        for line in desc.suspicious_lines
    )
    return hazards


def looks_like_descriptor(head: bytes) -> bool:
    """True when ``head`` starts a VMDK descriptor file.

    Either it starts with the ``# Disk DescriptorFile`` signature, or it is what qemu's own probe
    takes for a descriptor: comment lines and blank (space-only) lines, then ``version=1|2|3``.
    Arbitrary text matches neither.
    """
    if head.startswith(SIGNATURE) or head.startswith(b"\xef\xbb\xbf" + SIGNATURE):
        return True
    return _qemu_probe(head[:2048])


def _qemu_probe(buf: bytes) -> bool:
    pos = 0
    size = len(buf)
    while pos < size:
        ch = buf[pos : pos + 1]
        if ch == b"#":
            nl = buf.find(b"\n", pos)
            if nl < 0:
                return False
            pos = nl + 1
            continue
        if ch == b" ":
            while pos < size and buf[pos : pos + 1] == b" ":
                pos += 1
            if pos < size and buf[pos : pos + 1] == b"\r":
                pos += 1
            if pos >= size or buf[pos : pos + 1] != b"\n":
                return False
            pos += 1
            continue
        return any(
            buf.startswith(b"version=%d%s" % (v, nl), pos)
            for v in (1, 2, 3)
            for nl in (b"\n", b"\r\n")
        )
    return False


def require_text(data: bytes, what: str) -> None:
    """Refuse a descriptor that holds control bytes other than whitespace before its NUL."""
    end = data.find(b"\0")
    body = data if end < 0 else data[:end]
    bad = next((i for i, b in enumerate(body) if b < 0x20 and b not in (0x09, 0x0A, 0x0D)), None)
    if bad is not None:
        raise CorruptImageError(f"{what} holds a control byte 0x{body[bad]:02x} at offset {bad}")
