"""IMG-DRIVERS: put the missing virtio (and IDE, Xen front-end) modules into the initrd.

For each kernel the rule reports (:func:`imageport.rules.kernel.judged_kernels`: the default
kernel, and other kernels that cannot find a virtio disk), the drivers it misses are added
when the guest has them as modules (a line in ``/lib/modules/<version>/modules.dep``; with a
merged /usr, ``/lib`` resolves to ``/usr/lib`` inside the guest). The initrd is not rebuilt with
the guest's own tool (under emulation that takes many minutes in the appliance): the kernel
unpacks concatenated cpio archives in order, later files replacing earlier ones, so one
uncompressed newc archive holding the modules, the updated module indexes and a load list
(:mod:`imageport.configure.initrd_modules`) is appended after the original, zero-padded to 4
bytes (:mod:`imageport.configure.cpio_writer`). The original archives stay byte for byte.

The guest's own configuration is also told about the drivers, so that the next rebuild of the
initrd by the guest (a kernel update runs ``update-initramfs`` or ``dracut``, which replaces the
appended segment) keeps them: initramfs-tools reads ``/etc/initramfs-tools/modules`` (one module
per line, included and loaded at boot), dracut ``/etc/dracut.conf.d/*.conf``
(``add_drivers+=" ... "`` includes them). Tools that list an initrd by decompressing everything
after its first compressed segment (``lsinitramfs``, ``unmkinitramfs``) do not see the appended
segment; the kernel does.

Not done, with a note saying why: a driver built in or already present (nothing to do), a
driver with no module installed (the kernel's modules package is missing), no initrd or one
that cannot be read, an initrd ending in a compressed segment after which the kernel cannot
find another archive (legacy lzma and lz4 have no reliable end), one without modprobe, and
anything over the caps.
"""

from __future__ import annotations

from imageport.configure.cpio_writer import append_segment, newc_archive, with_parents
from imageport.configure.edits import Edits
from imageport.configure.initrd_modules import (
    MAX_ADDED_BYTES,
    Addition,
    GuestModules,
    keep_patterns,
    plan_addition,
)
from imageport.configure.kmod_index import parse_aliases, parse_modules_dep
from imageport.errors import ImageportError
from imageport.guest.boot.initrd import InitrdContents, read_initrd
from imageport.guest.boot.kernels import Kernel, read_kernels
from imageport.guest.facts.inspect import GuestFacts
from imageport.guest.fs.base import FileType
from imageport.rules.kernel import judged_kernels

RULE = "IMG-DRIVERS"
INITRAMFS_TOOLS_MODULES = "/etc/initramfs-tools/modules"
INITRAMFS_TOOLS_HEADER = (
    "# List of modules that you want to include in your initramfs.\n"
    "# They will be loaded at boot time in the order below.\n"
)
DRACUT_CONF = "/etc/dracut.conf.d/90-imageport-drivers.conf"
#: Largest initrd read to extend, and largest result written.
MAX_INITRD_BYTES = 256 << 20
#: Largest module index text read (a full modules.alias is about 1.5 MiB).
MAX_INDEX_TEXT_BYTES = 16 << 20
#: Largest single module file read.
MAX_MODULE_BYTES = 32 << 20
#: Segments after which the kernel finds the next archive (the decompressor stops at the
#: end of its stream and says where): none, gzip, xz, bzip2, zstd.
APPENDABLE = ("none", "gzip", "xz", "bzip2", "zstd")


def plan_drivers(guest: GuestFacts, edits: Edits) -> None:
    """Plan the initrd extensions for every kernel IMG-DRIVERS reports."""
    for kernel, missing in judged_kernels(guest.derive(read_kernels)):
        checkpoint = edits.checkpoint()
        try:
            _fix_kernel(kernel, missing, edits)
        except (ValueError, ImageportError) as exc:  # ValueError: why the modules cannot be added
            edits.rollback(checkpoint)  # nothing half-done for this kernel
            edits.note(RULE, f"kernel {kernel.version}: initrd not extended: {exc}")


def _guest_modules(version: str, edits: Edits) -> tuple[GuestModules, str] | None:
    """The guest's module index for ``version`` and the directory it is in; None when the
    guest has no modules.dep for it."""
    for top in ("/lib/modules", "/usr/lib/modules"):
        home = f"{top}/{version}"
        dep = edits.read_text(f"{home}/modules.dep", MAX_INDEX_TEXT_BYTES)
        if dep is None:
            continue
        alias = edits.read_text(f"{home}/modules.alias", MAX_INDEX_TEXT_BYTES) or ""
        symbols = edits.read_text(f"{home}/modules.symbols", MAX_INDEX_TEXT_BYTES) or ""

        def read(path: str, home: str = home) -> bytes:
            data = edits.read(f"{home}/{path}", MAX_MODULE_BYTES)
            if data is None:
                raise ValueError(f"{home}/{path} is named in modules.dep but is not a file")
            return data

        modules = GuestModules(
            tuple(parse_modules_dep(dep)),
            tuple(parse_aliases(alias)),
            tuple(parse_aliases(symbols, "modules.symbols")),
            read,
        )
        return modules, home
    return None


def _fix_kernel(kernel: Kernel, missing: list[str], edits: Edits) -> None:
    version = kernel.version
    initrd = kernel.initrd
    if initrd is None:
        edits.note(RULE, f"kernel {version} has no initrd to add {', '.join(missing)} to")
        return
    if initrd.error is not None:
        edits.note(RULE, f"kernel {version}: {initrd.path} cannot be read: {initrd.error}")
        return
    found = _guest_modules(version, edits)
    if found is None:
        edits.note(
            RULE,
            f"kernel {version}: no /lib/modules/{version}/modules.dep, so {', '.join(missing)} "
            f"cannot be added: install the kernel's modules package",
        )
        return
    guest, home = found
    installed = guest.by_name()
    wanted = [d for d in missing if d in installed]
    absent = [d for d in missing if d not in installed]
    if absent:
        edits.note(
            RULE,
            f"kernel {version}: {', '.join(absent)} not added: no module under {home} "
            f"(built without it; install the distribution's kernel modules package)",
        )
    if not wanted:
        return
    original = edits.read(initrd.path, MAX_INITRD_BYTES)
    if original is None:
        edits.note(RULE, f"kernel {version}: {initrd.path} is not a regular file")
        return
    contents = read_initrd(original, keep=keep_patterns(version), max_kept=MAX_INDEX_TEXT_BYTES)
    _check_appendable(contents, initrd.path)
    addition = plan_addition(contents, version, wanted, guest)
    if not addition.modules:
        edits.note(RULE, f"kernel {version}: the initrd's index already has {', '.join(wanted)}")
        return
    existing = {
        m.path for m in contents.members if m.type in (FileType.DIRECTORY, FileType.SYMLINK)
    }
    mtime = edits.files.stat(initrd.path).mtime
    segment = newc_archive(
        with_parents(addition.files, existing), mtime=max(0, min(mtime, 0xFFFFFFFF))
    )
    if len(segment) > 2 * MAX_ADDED_BYTES:
        raise ValueError(f"the segment would be {len(segment)} bytes")
    result = append_segment(original, segment)
    if len(result) > MAX_INITRD_BYTES:
        raise ValueError(f"the initrd would grow past {MAX_INITRD_BYTES} bytes")
    for note in addition.notes:
        edits.note(RULE, f"kernel {version}: {note}")
    edits.write(
        initrd.path,
        result,
        rule=RULE,
        why=_why(addition, wanted, contents, len(segment)),
        max_bytes=MAX_INITRD_BYTES,
    )
    _keep_on_rebuild(addition, wanted, edits)


def _keep_on_rebuild(addition: Addition, wanted: list[str], edits: Edits) -> None:
    """Tell the guest's initrd tool to include the drivers when it rebuilds the initrd."""
    if addition.generator == "initramfs-tools" and addition.load_list:
        before = edits.read_text(INITRAMFS_TOOLS_MODULES) or INITRAMFS_TOOLS_HEADER
        listed = {line.split()[0] for line in before.splitlines() if line.strip()}
        extra = [d for d in addition.load_list if d not in listed]
        if extra:
            text = (
                before + ("" if before.endswith("\n") else "\n") + "".join(f"{d}\n" for d in extra)
            )
            edits.write(
                INITRAMFS_TOOLS_MODULES,
                text,
                rule=RULE,
                why=f"listed {', '.join(extra)} so that update-initramfs keeps them in the "
                f"initrds it rebuilds (and loads them at boot)",
            )
    elif addition.generator == "dracut":
        before = edits.read_text(DRACUT_CONF) or ""  # another kernel's fix may have made it
        names = [n for line in before.splitlines() for n in _dracut_drivers(line)]
        names += [d for d in wanted if d not in names]
        edits.write(
            DRACUT_CONF,
            "# Added by imageport: the drivers the cloud's virtual hardware needs.\n"
            f'add_drivers+=" {" ".join(names)} "\n',
            rule=RULE,
            why=f"asked dracut to add {', '.join(names)} to the initrds it rebuilds",
        )


def _dracut_drivers(line: str) -> list[str]:
    """The names of an ``add_drivers+=" ... "`` line (none for another line)."""
    key, _, value = line.partition("+=")
    return value.strip().strip('"').split() if key.strip() == "add_drivers" else []


def _check_appendable(contents: InitrdContents, path: str) -> None:
    if contents.problems:
        raise ValueError(f"{path} is damaged: {contents.problems[0]}")
    last = contents.segments[-1].compression if contents.segments else "none"
    if last not in APPENDABLE:
        raise ValueError(
            f"{path} ends with a {last} segment, after which the kernel cannot find an "
            f"appended archive; rebuild the initrd with the guest's own tool instead"
        )


def _archives(contents: InitrdContents) -> str:
    kinds = [
        "uncompressed" if s.compression == "none" else s.compression for s in contents.segments
    ]
    return " and ".join(kinds) + (" archives" if len(kinds) > 1 else " archive")


def _why(addition: Addition, wanted: list[str], contents: InitrdContents, size: int) -> str:
    deps = [m for m in addition.modules if m not in wanted]
    text = (
        f"appended {len(addition.modules)} kernel modules to the initrd so it loads "
        f"{', '.join(wanted)} at boot"
        + (f" (with {', '.join(deps)})" if deps else "")
        + f": a {size}-byte uncompressed cpio archive after the original {_archives(contents)}, "
        f"left unchanged; modules.dep, modules.alias, modules.symbols and their .bin indexes "
        f"updated"
    )
    if addition.load_files:
        text += f"; loaded at boot through {', '.join('/' + p for p in addition.load_files)}"
    return text
