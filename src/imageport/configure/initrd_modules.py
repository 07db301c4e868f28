"""The files an initrd needs to load more kernel modules, as one cpio segment to append.

Given what an initrd holds (its members and its own module indexes, as depmod wrote them
inside it when the initrd was made) and the guest's index of installed modules
(``/lib/modules/<version>/modules.dep``, ``modules.alias``, ``modules.symbols``), this works
out which module files are missing for the wanted drivers (with every module their
``modules.dep`` line needs), and writes:

- the module files, at their paths under the initrd's own module directory
  (``usr/lib/modules/<version>/`` on merged-/usr initrds, ``lib/modules/<version>/`` else);
- the initrd's ``modules.dep``, ``modules.alias`` and ``modules.symbols`` with the new
  modules' lines appended, and the binary indexes kmod reads, rebuilt from them
  (:mod:`imageport.configure.kmod_index`), so udev loads the drivers by their aliases;
- a load list so the drivers load even before udev looks at the devices, in the form the
  initrd's generator reads: initramfs-tools' ``init`` runs ``/sbin/modprobe`` for each line of
  ``/conf/modules`` (``load_modules`` in ``scripts/functions``); dracut's ``parse-kernel.sh``
  runs ``modprobe`` for ``rd.driver.pre=`` of the command line, which ``getcmdline`` also reads
  from ``/etc/cmdline.d/*.conf``, and systemd-based initrds load ``/etc/modules-load.d/*.conf``.
  The Xen front ends are left to udev (they refuse to load outside Xen, which only adds noise).

Nothing here reads the guest: the caller hands in the bytes, and every path used comes from a
checked ``modules.dep`` line (:func:`~imageport.configure.kmod_index.module_path`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from imageport.configure.kmod_index import (
    DepLine,
    alias_index,
    dep_index,
    format_aliases,
    format_modules_dep,
    parse_aliases,
    parse_modules_dep,
)
from imageport.guest.boot.initrd import InitrdContents
from imageport.guest.fs.base import FileType

#: Modules added to one initrd at most (the drivers with their dependencies are about 15).
MAX_ADDED_MODULES = 64
#: Bytes of module files added to one initrd at most.
MAX_ADDED_BYTES = 64 << 20

#: Kernel versions used in paths (``6.1.0-13-amd64``, ``5.14.0-362.el9.x86_64``).
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+~-]{0,127}")
_MODPROBES = ("sbin/modprobe", "usr/sbin/modprobe", "bin/modprobe", "usr/bin/modprobe")
_TEXT_INDEXES = ("modules.dep", "modules.alias", "modules.symbols")
_SYMBOLS_HEADER = "# Aliases for symbols, used by symbol_request().\n"
#: Drivers not put in a load list (udev loads them on Xen, where they apply).
_UDEV_ONLY = ("xen_blkfront", "xen_netfront")
INITRAMFS_TOOLS_LIST = "conf/modules"
DRACUT_CMDLINE = "etc/cmdline.d/90-imageport-drivers.conf"
MODULES_LOAD = "etc/modules-load.d/imageport-drivers.conf"


@dataclass(frozen=True, slots=True)
class GuestModules:
    """The guest's installed modules for one kernel version: its ``modules.dep`` lines, the
    alias and symbol lines, and a reader of a module file by its modules.dep path."""

    lines: tuple[DepLine, ...]
    aliases: tuple[tuple[str, str], ...]
    symbols: tuple[tuple[str, str], ...]
    read: Callable[[str], bytes]

    def by_name(self) -> dict[str, DepLine]:
        return {line.name: line for line in self.lines}


@dataclass(frozen=True, slots=True)
class Addition:
    """What to append: the files (initrd path -> bytes), the modules added (names), the
    drivers put in a load list, and where."""

    files: Mapping[str, bytes]
    modules: tuple[str, ...]
    load_list: tuple[str, ...]
    load_files: tuple[str, ...]
    module_bytes: int
    #: ``initramfs-tools``, ``dracut`` or ``unknown``: who made the initrd
    generator: str
    notes: tuple[str, ...] = field(default=())


def check_version(version: str) -> str:
    if not _VERSION.fullmatch(version) or ".." in version:
        raise ValueError(f"kernel version {version[:80]!r} is not a plain version string")
    return version


def keep_patterns(version: str) -> tuple[str, ...]:
    """The initrd members whose contents :func:`plan_addition` needs (``read_initrd``'s keep)."""
    check_version(version)
    return (
        *(
            f"{top}/{version}/{name}"
            for top in ("lib/modules", "usr/lib/modules")
            for name in _TEXT_INDEXES
        ),
        INITRAMFS_TOOLS_LIST,
    )


def _modules_dir(contents: InitrdContents, version: str) -> str:
    """Where the initrd keeps its modules for ``version``: where its modules.dep is, else
    where its module files are, else beside a merged /usr (``lib`` a link) or in lib/."""
    types = {m.path: m.type for m in contents.members}
    for top in ("usr/lib/modules", "lib/modules"):
        if types.get(f"{top}/{version}/modules.dep") is FileType.REGULAR:
            return f"{top}/{version}"
    for m in contents.members:
        for top in ("usr/lib/modules", "lib/modules"):
            if m.path.startswith(f"{top}/{version}/") and m.type is FileType.REGULAR:
                return f"{top}/{version}"
    return (
        f"usr/lib/modules/{version}"
        if types.get("lib") is FileType.SYMLINK
        else (f"lib/modules/{version}")
    )


def _kept_text(contents: InitrdContents, path: str) -> str | None:
    kept = contents.kept.get(path)
    if kept is None:
        return None
    if kept.truncated:
        raise ValueError(f"the initrd's {path} is larger than the {len(kept.data)} bytes read")
    return kept.data.decode("utf-8", "replace")


def generator_of(contents: InitrdContents) -> str:
    """Which tool made the initrd: ``initramfs-tools`` (its ``scripts/functions`` and
    ``conf/initramfs.conf``), ``dracut`` (its ``dracut-lib.sh``), or ``unknown``."""
    paths = {m.path for m in contents.members}
    if "scripts/functions" in paths and "conf/initramfs.conf" in paths:
        return "initramfs-tools"
    if any(p.endswith("dracut-lib.sh") or p.startswith("usr/lib/dracut/") for p in paths):
        return "dracut"
    return "unknown"


def _closure(wanted: list[str], guest: dict[str, DepLine], present: set[str]) -> list[DepLine]:
    """The guest lines of ``wanted`` and of every module their lines name, minus ``present``."""
    added: dict[str, DepLine] = {}
    for driver in wanted:
        for path in (guest[driver].path, *guest[driver].deps):
            name = DepLine(path, ()).name
            if name in present or name in added:
                continue
            line = guest.get(name)
            if line is None:
                raise ValueError(f"modules.dep names {path} for {driver}, but has no line for it")
            added[name] = line
            if len(added) > MAX_ADDED_MODULES:
                raise ValueError(f"more than {MAX_ADDED_MODULES} modules would be added")
    return list(added.values())


def plan_addition(
    contents: InitrdContents, version: str, wanted: list[str], guest: GuestModules
) -> Addition:
    """The files to append to the initrd so it can load ``wanted`` (module names the guest's
    modules.dep has) for kernel ``version``. Raises ValueError saying why
    not (a malformed index, no modprobe, over a cap), which the caller reports as is."""
    check_version(version)
    paths = {m.path for m in contents.members}
    if not any(p in paths for p in _MODPROBES):
        raise ValueError("the initrd has no modprobe, so it cannot load modules")
    home = _modules_dir(contents, version)
    texts = {name: _kept_text(contents, f"{home}/{name}") for name in _TEXT_INDEXES}
    for name in _TEXT_INDEXES:
        if texts[name] is None and f"{home}/{name}.bin" in paths:
            raise ValueError(f"the initrd has {home}/{name}.bin without {name} to rebuild it from")
    lines = parse_modules_dep(texts["modules.dep"] or "")
    present = {line.name for line in lines}
    guest_lines = guest.by_name()
    new = _closure(wanted, guest_lines, present)
    initrd_path = {line.name: line.path for line in lines}
    added_names = {line.name for line in new}
    files: dict[str, bytes] = {}
    total = 0
    for line in new:
        data = guest.read(line.path)
        total += len(data)
        if total > MAX_ADDED_BYTES:
            raise ValueError(f"the modules to add are larger than {MAX_ADDED_BYTES} bytes")
        files[f"{home}/{line.path}"] = data
    merged = [
        *lines,
        *(
            DepLine(line.path, tuple(initrd_path.get(DepLine(d, ()).name, d) for d in line.deps))
            for line in new
        ),
    ]
    priority = {line.name: i for i, line in enumerate(merged)}
    aliases = [
        *parse_aliases(texts["modules.alias"] or ""),
        *(a for a in guest.aliases if a[1] in added_names),
    ]
    symbols = [
        *parse_aliases(texts["modules.symbols"] or "", "modules.symbols"),
        *(s for s in guest.symbols if s[1] in added_names),
    ]
    files[f"{home}/modules.dep"] = format_modules_dep(merged).encode()
    files[f"{home}/modules.dep.bin"] = dep_index(merged)
    files[f"{home}/modules.alias"] = format_aliases(
        aliases, "# Aliases extracted from modules themselves.\n"
    ).encode()
    files[f"{home}/modules.alias.bin"] = alias_index(aliases, priority)
    if symbols or texts["modules.symbols"] is not None:
        files[f"{home}/modules.symbols"] = format_aliases(symbols, _SYMBOLS_HEADER).encode()
        files[f"{home}/modules.symbols.bin"] = alias_index(symbols, priority)
    load = tuple(d for d in wanted if d not in _UDEV_ONLY)
    load_files, notes = _load_list(contents, load, files)
    return Addition(
        files,
        tuple(line.name for line in new),
        load,
        load_files,
        total,
        generator_of(contents),
        tuple(notes),
    )


def _load_list(
    contents: InitrdContents, load: tuple[str, ...], files: dict[str, bytes]
) -> tuple[tuple[str, ...], list[str]]:
    """Add the load list the initrd's generator reads to ``files``; the paths written, notes."""
    if not load:
        return (), []
    generator = generator_of(contents)
    if generator == "initramfs-tools":
        before = _kept_text(contents, INITRAMFS_TOOLS_LIST) or ""
        listed = {line.split()[0] for line in before.splitlines() if line.strip()}
        if before and not before.endswith("\n"):
            before += "\n"
        extra = "".join(f"{d}\n" for d in load if d not in listed)
        files[INITRAMFS_TOOLS_LIST] = (before + extra).encode()
        return (INITRAMFS_TOOLS_LIST,), []
    if generator == "dracut":
        files[DRACUT_CMDLINE] = f"rd.driver.pre={','.join(load)}\n".encode()
        files[MODULES_LOAD] = "".join(f"{d}\n" for d in load).encode()
        return (DRACUT_CMDLINE, MODULES_LOAD), []
    return (), [
        "the initrd was made by neither initramfs-tools nor dracut: no load list was added; "
        "udev loads the drivers by their aliases"
    ]
