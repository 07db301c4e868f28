"""The ELF file header: which machine and word size a guest's binaries are built for.

Learned from the System V ABI's "ELF header" chapter and the ``elf(5)`` manual page: 16 bytes of
identification (``\\x7fELF``, the class 1 = 32-bit or 2 = 64-bit, the data encoding 1 = little
or 2 = big endian, the version 1, the OS ABI), then ``e_type``, ``e_machine`` and ``e_version``
in the file's own byte order, then addresses whose width depends on the class. Only the fixed
part is needed here: the machine (``EM_X86_64`` = 62, ``EM_AARCH64`` = 183, ``EM_386`` = 3 ...)
tells the architecture of the userland, which the platform must be able to run as a full
virtualization guest.

:func:`read_architecture` reads the first 64 bytes of a few binaries every Linux system has
(``/bin/sh``, ``ls``, ``init``) through :class:`~imageport.guest.files.mounts.GuestFiles`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from imageport.errors import CorruptImageError, ImageportError
from imageport.guest.files.mounts import GuestFiles
from imageport.guest.fs.base import FileType

MAGIC = b"\x7fELF"
#: Bytes of the largest (64-bit) ELF header.
HEADER_BYTES = 64
#: e_ident (16 bytes), e_type, e_machine, e_version; the same in both classes.
_IDENT = struct.Struct("4sBBBB8x")
_FIXED = {"<": struct.Struct("<HHI"), ">": struct.Struct(">HHI")}
#: e_entry, e_phoff, e_shoff, e_flags, e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum,
#: e_shstrndx, after the 24 fixed bytes.
_REST = {
    (32, "<"): struct.Struct("<IIIIHHHHHH"),
    (32, ">"): struct.Struct(">IIIIHHHHHH"),
    (64, "<"): struct.Struct("<QQQIHHHHHH"),
    (64, ">"): struct.Struct(">QQQIHHHHHH"),
}
_EHSIZE = {32: 52, 64: 64}

#: e_machine values (from the ABI's registry) and the names ``uname -m`` uses for them.
MACHINES: dict[int, str] = {
    2: "sparc",
    3: "i386",
    8: "mips",
    20: "ppc",
    21: "ppc64",
    22: "s390",
    40: "arm",
    43: "sparc64",
    50: "ia64",
    62: "x86_64",
    183: "aarch64",
    243: "riscv",
    258: "loongarch",
}

#: Binaries tried in order; the first with a readable ELF header decides.
ARCH_PROBES = (
    "/bin/sh",
    "/usr/bin/sh",
    "/bin/ls",
    "/usr/bin/ls",
    "/sbin/init",
    "/usr/lib/systemd/systemd",
    "/bin/bash",
    "/usr/bin/bash",
)


@dataclass(frozen=True, slots=True)
class ElfHeader:
    """The fields of an ELF file header that say what the file is for."""

    bits: int  #: 32 or 64 (EI_CLASS)
    byte_order: str  #: ``little`` or ``big`` (EI_DATA)
    os_abi: int
    type: int  #: ET_EXEC = 2, ET_DYN = 3 ...
    machine: int  #: e_machine
    header_size: int  #: e_ehsize

    @classmethod
    def from_bytes(cls, data: bytes) -> ElfHeader:
        """Parse the header at the start of ``data``; CorruptImageError when it is not one."""
        if len(data) < _IDENT.size + _FIXED["<"].size:
            raise CorruptImageError("ELF: header is cut short")
        magic, ei_class, ei_data, ei_version, os_abi = _IDENT.unpack_from(data)
        if magic != MAGIC:
            raise CorruptImageError("ELF: no \\x7fELF magic")
        if ei_class not in (1, 2) or ei_data not in (1, 2) or ei_version != 1:
            raise CorruptImageError(
                f"ELF: invalid class {ei_class}, data encoding {ei_data} or version {ei_version}"
            )
        bits = 32 if ei_class == 1 else 64
        order = "<" if ei_data == 1 else ">"
        e_type, machine, _version = _FIXED[order].unpack_from(data, _IDENT.size)
        rest = _REST[(bits, order)]
        if len(data) < 24 + rest.size:
            raise CorruptImageError("ELF: header is cut short")
        ehsize = rest.unpack_from(data, 24)[4]
        if ehsize != _EHSIZE[bits]:
            raise CorruptImageError(f"ELF: header size {ehsize} is not {_EHSIZE[bits]}")
        return cls(bits, "little" if order == "<" else "big", os_abi, e_type, machine, ehsize)

    @property
    def architecture(self) -> str:
        """The machine as ``uname -m`` names it (``x86_64``, ``aarch64``, ``i386``, ``x32``,
        ``ppc64le``, ``s390x`` ...), or ``machine-<n>`` for one not listed."""
        name = MACHINES.get(self.machine, f"machine-{self.machine}")
        if name == "x86_64" and self.bits == 32:
            return "x32"
        if name == "ppc64" and self.byte_order == "little":
            return "ppc64le"
        if name == "s390" and self.bits == 64:
            return "s390x"
        if name in ("riscv", "loongarch", "mips"):
            return f"{name}{self.bits}"
        return name


@dataclass(frozen=True, slots=True)
class Architecture:
    """The guest's userland architecture and the binary it was read from."""

    name: str  #: see :attr:`ElfHeader.architecture`
    bits: int
    path: str  #: the guest path read (after symlinks)
    header: ElfHeader


def read_architecture(files: GuestFiles) -> Architecture | None:
    """The architecture of the first of :data:`ARCH_PROBES` with a valid ELF header, or None."""
    for path in ARCH_PROBES:
        try:
            fs, ino, resolved = files.locate(path)
            if fs.stat_ino(ino).type is not FileType.REGULAR:
                continue
            header = ElfHeader.from_bytes(fs.read_ino(ino, 0, HEADER_BYTES))
        except ImageportError:
            continue
        return Architecture(header.architecture, header.bits, resolved, header)
    return None
