"""Boot loader configuration files and the kernel command lines they hold (parsers on text).

Formats learned from the GRUB 2 manual ("Simple configuration", the ``menuentry``,
``submenu``, ``linux`` and ``set default`` commands, and how ``default`` names an entry by
number, title or id, with ``>`` descending into a submenu), from the Boot Loader Specification
(``/loader/entries/*.conf`` with ``title``, ``version``, ``linux`` and ``options`` keys) and
Fedora/RHEL's ``blscfg`` (``$kernelopts`` taken from ``grubenv``), from the SYSLINUX wiki
(``DEFAULT``, ``LABEL``, ``KERNEL``/``LINUX``, ``APPEND``, ``MENU DEFAULT``), from the GRUB
Legacy manual (``menu.lst``: ``default N``, ``title``, ``kernel``) and from
``/etc/default/grub`` as ``grub-mkconfig`` reads it. Nothing here touches the guest: every
function takes the text of one file and where it came from.

Every parser is bounded: at most :data:`MAX_LINES` lines, :data:`MAX_DEPTH` nested blocks,
:data:`MAX_ENTRIES` entries per file and :data:`MAX_WORDS` words per command line; lines quoted
as evidence are cut to :data:`MAX_QUOTE` characters.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

#: Lines of one configuration file considered.
MAX_LINES = 20000
#: Nested ``{ }`` blocks followed in grub.cfg.
MAX_DEPTH = 32
#: Kernel entries kept from one file.
MAX_ENTRIES = 512
#: Characters of a line kept for evidence.
MAX_QUOTE = 400
#: Words of one command line kept.
MAX_WORDS = 1024

_GRUB_KERNEL_COMMANDS = frozenset({"linux", "linux16", "linuxefi", "kernel"})
_GRUB_TITLE = re.compile(r"""^(?:menuentry|submenu)\s+(?:'([^']*)'|"([^"]*)"|(\S+))""")
_GRUB_ID = re.compile(r"""(?:--id|\$menuentry_id_option)\s+(?:'([^']*)'|"([^"]*)"|(\S+))""")
_GRUB_SET_DEFAULT = re.compile(r"""^set\s+default=(?:'([^']*)'|"([^"]*)"|(\S*))""")


def _quote(line: str) -> str:
    line = line.strip()
    return line if len(line) <= MAX_QUOTE else line[:MAX_QUOTE] + "..."


def _words(text: str, *, comments: bool = False) -> list[str]:
    """Shell-like words; unbalanced quotes fall back to plain whitespace splitting."""
    try:
        return shlex.split(text, comments=comments, posix=True)[:MAX_WORDS]
    except ValueError:
        return text.split()[:MAX_WORDS]


@dataclass(frozen=True, slots=True)
class KernelLine:
    """One boot entry's kernel and command line, with where it was written."""

    source: str  #: the file, as the report names it (``/boot/grub/grub.cfg``)
    line_no: int
    line: str  #: the line as written (cut to MAX_QUOTE characters)
    title: str  #: the menu entry's title or label ("" when there is none)
    kernel: str
    args: tuple[str, ...]

    def values(self, key: str) -> tuple[str, ...]:
        """Every value of ``key=`` on the command line, in order."""
        prefix = key + "="
        return tuple(a[len(prefix) :] for a in self.args if a.startswith(prefix))

    @property
    def root(self) -> str | None:
        """The ``root=`` value the kernel uses (the last one wins), or None."""
        found = self.values("root")
        return found[-1] if found else None

    @property
    def consoles(self) -> tuple[str, ...]:
        return self.values("console")

    @property
    def where(self) -> str:
        """``file:line: text``, the evidence form."""
        return f"{self.source}:{self.line_no}: {self.line}"


@dataclass(frozen=True, slots=True)
class LoaderConfig:
    """The kernel entries of one configuration file and the one booted by default."""

    source: str
    kind: str  #: ``grub``, ``bls``, ``syslinux`` or ``grub-legacy``
    entries: tuple[KernelLine, ...]
    default: KernelLine | None
    #: grub.cfg only: it loads Boot Loader Specification entries (``blscfg``).
    uses_bls: bool = False


@dataclass(frozen=True, slots=True)
class ShellSetting:
    """A ``KEY="value"`` line of a shell-style file such as ``/etc/default/grub``."""

    source: str
    line_no: int
    line: str
    key: str
    value: str

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line_no}: {self.line}"


def _kernel_line(source: str, no: int, raw: str, title: str, words: Sequence[str]) -> KernelLine:
    kernel = words[1] if len(words) > 1 else ""
    return KernelLine(source, no, _quote(raw), title, kernel, tuple(words[2:]))


@dataclass(slots=True)
class _Node:
    """A menuentry or submenu of grub.cfg while it is parsed."""

    kind: str
    title: str
    ident: str
    kernel: KernelLine | None = None
    children: list[_Node] = field(default_factory=list)


def _first_group(m: re.Match[str] | None) -> str:
    if m is None:
        return ""
    return next((g for g in m.groups() if g is not None), "")


def _first_kernel(node: _Node, depth: int = 0) -> KernelLine | None:
    if node.kernel is not None or depth > MAX_DEPTH:
        return node.kernel
    for child in node.children:
        found = _first_kernel(child, depth + 1)
        if found is not None:
            return found
    return None


def _pick(items: list[_Node], spec: str) -> KernelLine | None:
    """The entry ``spec`` (``2``, ``1>0``, a title or an id) names among ``items``."""
    level = items
    node: _Node | None = None
    for part in spec.split(">")[:MAX_DEPTH]:
        part = part.strip()
        if part.isdigit():
            index = int(part)
            node = level[index] if index < len(level) else None
        else:
            node = next((n for n in level if part in (n.title, n.ident)), None)
        if node is None:
            return None
        level = node.children
    return _first_kernel(node) if node is not None else None


def parse_grub_cfg(text: str, source: str, saved_entry: str | None = None) -> LoaderConfig:
    """The entries of a GRUB 2 ``grub.cfg`` and the default one.

    The default is the entry that the last ``set default=`` names; a variable there
    (``${saved_entry}``) is replaced by ``saved_entry`` from grubenv when given. When nothing
    resolves, GRUB boots the first entry, and so does this.
    """
    top = _Node("top", "", "")
    stack = [top]
    entries: list[KernelLine] = []
    default_spec: str | None = None
    uses_bls = False
    for no, raw in enumerate(text.splitlines()[:MAX_LINES], start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        word = line.split(None, 1)[0]
        if word in ("menuentry", "submenu") and line.endswith("{"):
            node = _Node(
                word, _first_group(_GRUB_TITLE.match(line)), _first_group(_GRUB_ID.search(line))
            )
            if len(stack) < MAX_DEPTH:
                stack[-1].children.append(node)
                stack.append(node)
            continue
        if line.endswith("{") and word not in ("if", "elif", "else", "for", "while"):
            if len(stack) < MAX_DEPTH:
                stack.append(_Node("block", "", ""))
            continue
        if line == "}":
            if len(stack) > 1:
                stack.pop()
            continue
        if word == "blscfg":
            uses_bls = True
        elif word == "set" and len(stack) == 1:
            m = _GRUB_SET_DEFAULT.match(line)
            if m:
                value = _first_group(m)
                if "$" in value:
                    value = saved_entry or ""
                if value:
                    default_spec = value
        elif word in _GRUB_KERNEL_COMMANDS and len(entries) < MAX_ENTRIES:
            owner = stack[-1]
            kernel = _kernel_line(source, no, raw, owner.title, _words(line))
            entries.append(kernel)
            if owner.kind == "menuentry" and owner.kernel is None:
                owner.kernel = kernel
    default = _pick(top.children, default_spec) if default_spec else None
    if default is None and entries:
        default = _first_kernel(top) or entries[0]
    return LoaderConfig(source, "grub", tuple(entries), default, uses_bls)


def parse_grubenv(text: str) -> dict[str, str]:
    """``key=value`` pairs of a GRUB environment block (``#`` padding ignored)."""
    values: dict[str, str] = {}
    for line in text.splitlines()[:MAX_LINES]:
        if line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if sep and key.strip():
            values[key.strip()] = value.strip()
    return values


def parse_bls_entry(text: str, source: str, kernelopts: str | None = None) -> KernelLine | None:
    """A Boot Loader Specification entry as a kernel line (``options`` joined), or None.

    ``$kernelopts`` in ``options`` is replaced by ``kernelopts`` (from grubenv), as
    ``blscfg`` does on RHEL 8.
    """
    title = ""
    kernel = ""
    options: list[str] = []
    first_no, first_line = 0, ""
    for no, raw in enumerate(text.splitlines()[:MAX_LINES], start=1):
        key, _, value = raw.strip().partition(" ")
        value = value.strip()
        if key == "title":
            title = value
        elif key in ("linux", "efi") and not kernel:
            kernel = value
            first_no, first_line = first_no or no, first_line or raw
        elif key == "options":
            if kernelopts is not None:
                value = value.replace("${kernelopts}", kernelopts).replace(
                    "$kernelopts", kernelopts
                )
            options.extend(_words(value)[: MAX_WORDS - len(options)])
            first_no, first_line = no, raw
    if not kernel:
        return None
    return KernelLine(source, first_no, _quote(first_line), title, kernel, tuple(options))


def parse_syslinux_cfg(text: str, source: str) -> LoaderConfig:
    """The labels of an ``extlinux.conf``/``syslinux.cfg`` and the ``DEFAULT`` one."""
    labels: list[tuple[str, int, str, str, list[str]]] = []  # label, line no, line, kernel, args
    default_label = ""
    menu_default = ""
    for no, raw in enumerate(text.splitlines()[:MAX_LINES], start=1):
        words = raw.strip().split(None, 1)
        if not words or words[0].startswith("#"):
            continue
        key = words[0].lower()
        value = words[1].strip() if len(words) > 1 else ""
        if key == "default":
            default_label = value
        elif key == "label" and len(labels) < MAX_ENTRIES:
            labels.append((value, no, raw, "", []))
        elif labels and key in ("kernel", "linux"):
            label, _, _, _, args = labels[-1]
            labels[-1] = (label, no, raw, value, args)
        elif labels and key == "append":
            label, _, _, kernel, _ = labels[-1]
            labels[-1] = (label, no, raw, kernel, _words(value))
        elif labels and key == "menu" and value.lower() == "default":
            menu_default = labels[-1][0]
    entries = tuple(
        KernelLine(source, no, _quote(raw), label, kernel, tuple(args))
        for label, no, raw, kernel, args in labels
        if kernel
    )
    wanted = menu_default or default_label
    default = next((e for e in entries if e.title == wanted), entries[0] if entries else None)
    return LoaderConfig(source, "syslinux", entries, default)


def parse_menu_lst(text: str, source: str) -> LoaderConfig:
    """The entries of a GRUB Legacy ``menu.lst``/``grub.conf`` and the ``default`` one."""
    entries: list[KernelLine] = []
    titles = 0
    title = ""
    default_index = 0
    owner: list[int] = []  # for each entry: the index of its title
    for no, raw in enumerate(text.splitlines()[:MAX_LINES], start=1):
        words = raw.strip().split(None, 1)
        if not words or words[0].startswith("#"):
            continue
        key = words[0].lower()
        value = words[1].strip() if len(words) > 1 else ""
        if key == "default" and value.isdigit():
            default_index = int(value)
        elif key == "title":
            title = value
            titles += 1
        elif key == "kernel" and titles and len(entries) < MAX_ENTRIES:
            entries.append(_kernel_line(source, no, raw, title, ["kernel", *_words(value)]))
            owner.append(titles - 1)
    default = next(
        (e for e, t in zip(entries, owner, strict=True) if t == default_index),
        entries[0] if entries else None,
    )
    return LoaderConfig(source, "grub-legacy", tuple(entries), default)


def parse_shell_settings(text: str, source: str, keys: Sequence[str]) -> tuple[ShellSetting, ...]:
    """The last assignment of each of ``keys`` in a shell-style file (quotes undone)."""
    found: dict[str, ShellSetting] = {}
    for no, raw in enumerate(text.splitlines()[:MAX_LINES], start=1):
        line = raw.strip()
        key, sep, value = line.partition("=")
        if not sep or key not in keys:
            continue
        words = _words(value, comments=True)
        found[key] = ShellSetting(source, no, _quote(line), key, " ".join(words))
    return tuple(found[k] for k in keys if k in found)
