"""Edit the kernel command lines a guest's boot loader passes, in every file that holds them.

Shared by the fixes that change a command line (IMG-CONSOLE adds the serial console,
IMG-FSTAB-UUID names the root by UUID). Each fix is a function on one command line's
arguments as written (``root=/dev/sda3 ro quiet``) that returns them changed, or unchanged
when the line is already right; this module finds where the command lines are and splices
the result back, so that every other byte of each file stays as it was.

Where command lines are, as the boot facts (:mod:`imageport.guest.boot.modes`) read them:

* GRUB 2's generated ``grub.cfg`` (``/boot/grub/grub.cfg``, ``/boot/grub2/grub.cfg``, and one
  on a mounted EFI system partition that holds entries): the ``linux`` lines of its entries;
* GRUB Legacy's ``menu.lst``/``grub.conf``: the ``kernel`` lines;
* Boot Loader Specification entries (``/boot/loader/entries/*.conf``): the ``options`` lines,
  and, where they say ``$kernelopts`` (RHEL 8), the ``kernelopts=`` of ``grubenv``, a block
  of exactly 1024 bytes whose ``#`` padding is adjusted to keep that size;
* ``/etc/default/grub``: the last ``GRUB_CMDLINE_LINUX=`` (inside its quotes), which
  ``grub-mkconfig`` copies into future configurations.

SYSLINUX's ``APPEND`` lines are not edited (a label's ``KERNEL`` and ``APPEND`` may come in
either order); the fixes note such a configuration instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from imageport.configure.edits import Edits, NotEditableError
from imageport.errors import ImageportError
from imageport.guest.boot.bootloader import LoaderConfig, parse_grub_cfg, parse_menu_lst
from imageport.guest.boot.modes import (
    BLS_DIR,
    DEFAULT_GRUB,
    GRUB_CFG_PATHS,
    GRUBENV_PATHS,
    MAX_BLS_ENTRIES,
    MAX_DIR_SCAN,
    MENU_LST_PATHS,
    read_boot,
)
from imageport.guest.facts.inspect import GuestFacts

#: A change of one command line's arguments (returns them unchanged when nothing is to do).
ArgsFix = Callable[[str], str]

_KERNELOPTS_VAR = re.compile(r"\$\{?kernelopts\}?")
_CMDLINE_KEY = "GRUB_CMDLINE_LINUX"
_ASSIGNMENT = re.compile(r"^(?P<head>\s*(?:export\s+)?GRUB_CMDLINE_LINUX=)(?P<value>.*)$")


class UnsupportedLineError(NotEditableError):
    """A command line written in a form these edits do not change safely."""


# -- one line ---------------------------------------------------------------------------------


def _split_eol(line: str) -> tuple[str, str]:
    """``(text, ending)``: the line without its trailing whitespace and line break, and those."""
    body = line.rstrip()
    return body, line[len(body) :]


def fix_words_line(line: str, fix: ArgsFix) -> str:
    """A ``linux``/``kernel``/``options`` line with ``fix`` applied to its words (the command
    and the kernel path are words ``fix`` leaves alone: it only matches ``key=`` arguments)."""
    body, end = _split_eol(line)
    indent = body[: len(body) - len(body.lstrip())]
    return indent + fix(body.lstrip()) + end


def _closing_quote(value: str, quote: str) -> int:
    """The index of the quote that closes ``value`` (which starts with ``quote``), or -1."""
    i = 1
    while i < len(value):
        c = value[i]
        if c == "\\" and quote == '"':
            i += 2
            continue
        if c == quote:
            return i
        i += 1
    return -1


def fix_shell_assignment(line: str, fix: ArgsFix) -> str:
    """A ``GRUB_CMDLINE_LINUX=...`` line with ``fix`` applied inside its value, keeping its
    quotes (an unquoted value gets double quotes when the result has a space) and any comment
    after it. A value made of several quoted parts is refused (UnsupportedLineError)."""
    body, end = _split_eol(line)
    m = _ASSIGNMENT.match(body)
    if m is None:
        raise UnsupportedLineError(f"not a {_CMDLINE_KEY}= assignment: {body[:80]!r}")
    head, value = m["head"], m["value"]
    if value[:1] in ("'", '"'):
        quote = value[0]
        close = _closing_quote(value, quote)
        rest = value[close + 1 :] if close > 0 else ""
        if close < 0 or (rest and not rest[0].isspace()):
            raise UnsupportedLineError(f"{_CMDLINE_KEY}'s value is not one quoted string")
        inner = value[1:close]
        new = fix(inner)
        if quote == "'" and "'" in new:
            raise UnsupportedLineError("the new value would need other quoting")
        return f"{head}{quote}{new}{quote}{rest}{end}"
    word, sep, rest = value.partition(" ")
    if any(c in word for c in "\"'$`\\;"):
        raise UnsupportedLineError(f"{_CMDLINE_KEY}'s value is not a plain word")
    new = fix(word)
    if new != word and (" " in new or not new):
        new = f'"{new}"'
    return f"{head}{new}{sep}{rest}{end}"


def fix_grubenv(data: bytes, fix: ArgsFix) -> bytes | None:
    """The grubenv block with ``fix`` applied to ``kernelopts=``, its ``#`` padding adjusted so
    that it keeps its size (GRUB reads the block whole); None when it has no ``kernelopts``.
    Raises UnsupportedLineError when the new value does not fit in the block."""
    lines = data.decode("utf-8", "replace").split("\n")
    for i, line in enumerate(lines):
        if line.startswith("kernelopts="):
            lines[i] = "kernelopts=" + fix(line[len("kernelopts=") :])
            break
    else:
        return None
    header = [lines[0]] if lines[0].startswith("# GRUB Environment Block") else []
    content = [line for line in lines[len(header) :] if line and not line.startswith("#")]
    raw = ("\n".join([*header, *content]) + "\n").encode("utf-8")
    if len(raw) > len(data):
        raise UnsupportedLineError(f"kernelopts would make grubenv longer than {len(data)} bytes")
    return raw + b"#" * (len(data) - len(raw))


def fix_lines(text: str, line_nos: set[int], fix: Callable[[str], str]) -> tuple[str, int]:
    """``text`` with ``fix`` applied to the lines numbered ``line_nos`` (1-based), and how many
    lines changed; every other byte is kept."""
    lines = text.splitlines(keepends=True)
    changed = 0
    for no in sorted(line_nos):
        if 0 < no <= len(lines):
            new = fix(lines[no - 1])
            if new != lines[no - 1]:
                lines[no - 1] = new
                changed += 1
    return "".join(lines), changed


# -- words of a command line ------------------------------------------------------------------

_WORD = re.compile(r"\S+")


def replace_argument(args: str, key: str, old: str, new: str) -> str:
    """``args`` with every ``key=old`` word replaced by ``key=new`` (whole words only)."""
    target = f"{key}={old}"
    return _WORD.sub(lambda m: f"{key}={new}" if m.group(0) == target else m.group(0), args)


def argument_values(args: str, key: str) -> tuple[str, ...]:
    """The values of ``key=`` among the whitespace-separated words of ``args``."""
    prefix = key + "="
    return tuple(w[len(prefix) :] for w in args.split() if w.startswith(prefix))


def append_arguments(args: str, extra: str) -> str:
    """``args`` with ``extra`` appended (one space between, none for empty ``args``)."""
    return f"{args} {extra}" if args.strip() else extra


# -- the files --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Edited:
    """One file whose command lines a fix changed."""

    path: str
    lines: int


def _grub_cfg_paths(guest: GuestFacts) -> list[str]:
    paths = list(GRUB_CFG_PATHS)
    for config in guest.derive(read_boot).configs:
        if config.kind == "grub" and config.source.startswith("/") and config.source not in paths:
            paths.append(config.source)
    return paths


def unreachable_configs(guest: GuestFacts) -> tuple[str, ...]:
    """Configurations with kernel entries these edits cannot change: on an EFI system
    partition the guest does not mount, or SYSLINUX's."""
    return tuple(
        f"{c.source} ({c.kind})"
        for c in guest.derive(read_boot).configs
        if not c.source.startswith("/") or c.kind == "syslinux"
    )


def _bls_names(guest: GuestFacts) -> list[str]:
    try:
        listing = guest.files.listdir(BLS_DIR)
    except ImageportError:
        return []
    names = sorted(e.name for e in listing[:MAX_DIR_SCAN] if e.name.endswith(".conf"))
    return names[-MAX_BLS_ENTRIES:]


def _bls_option_lines(text: str) -> tuple[set[int], bool]:
    """The ``options`` line numbers of a BLS entry and whether one uses ``$kernelopts``."""
    lines: set[int] = set()
    uses_env = False
    for no, raw in enumerate(text.splitlines(), start=1):
        if raw.strip().split(None, 1)[:1] == ["options"]:
            lines.add(no)
            uses_env = uses_env or _KERNELOPTS_VAR.search(raw) is not None
    return lines, uses_env


def _write(edits: Edits, path: str, text: str, changed: int, rule: str, what: str) -> Edited:
    count = f"{changed} kernel command line{'s' if changed != 1 else ''}"
    edits.write(path, text, rule=rule, why=f"{what} ({count} in {path})")
    return Edited(path, changed)


def _edit_loader_file(
    edits: Edits,
    path: str,
    parse: Callable[[str, str], LoaderConfig],
    fix: ArgsFix,
    rule: str,
    what: str,
) -> Iterator[Edited]:
    text = edits.read_text(path)
    if text is None:
        return
    line_nos = {entry.line_no for entry in parse(text, path).entries}
    new, changed = fix_lines(text, line_nos, lambda line: fix_words_line(line, fix))
    if changed:
        yield _write(edits, path, new, changed, rule, what)


def edit_command_lines(
    guest: GuestFacts,
    edits: Edits,
    fix: ArgsFix,
    *,
    rule: str,
    what: str,
    defaults: bool = True,
) -> tuple[Edited, ...]:
    """Apply ``fix`` to every kernel command line of the guest's boot configuration (and, with
    ``defaults``, to GRUB_CMDLINE_LINUX in /etc/default/grub); ``what`` begins each change's
    sentence ("added console=ttyS0,115200 to"). Returns the files changed."""
    done: list[Edited] = []
    for path in _grub_cfg_paths(guest):
        done.extend(_edit_loader_file(edits, path, parse_grub_cfg, fix, rule, what))
    for path in MENU_LST_PATHS:
        done.extend(_edit_loader_file(edits, path, parse_menu_lst, fix, rule, what))
    env_fixed = False
    for name in _bls_names(guest):
        path = f"{BLS_DIR}/{name}"
        text = edits.read_text(path)
        if text is None:
            continue
        lines, uses_env = _bls_option_lines(text)
        if uses_env and not env_fixed:
            done.extend(_edit_grubenv(edits, fix, rule, what))
            env_fixed = True

        def fix_literal(args: str) -> str:
            # on RHEL 8 the options say $kernelopts (fixed in grubenv) plus literal words
            return args if _KERNELOPTS_VAR.search(args) else fix(args)

        new, changed = fix_lines(text, lines, lambda line: fix_words_line(line, fix_literal))
        if changed:
            done.append(_write(edits, path, new, changed, rule, what))
    if defaults:
        done.extend(_edit_default_grub(edits, fix, rule, what))
    return tuple(done)


def _edit_grubenv(edits: Edits, fix: ArgsFix, rule: str, what: str) -> Iterator[Edited]:
    for path in GRUBENV_PATHS:
        data = edits.read(path)
        if data is None:
            continue
        new = fix_grubenv(data, fix)
        if new is not None and new != data:
            edits.write(
                path,
                new,
                rule=rule,
                why=f"{what} (kernelopts= in {path}, which the boot entries' options use; "
                "padding adjusted to keep the block's 1024 bytes)",
            )
            yield Edited(path, 1)
        return


def _edit_default_grub(edits: Edits, fix: ArgsFix, rule: str, what: str) -> Iterator[Edited]:
    text = edits.read_text(DEFAULT_GRUB)
    if text is None:
        return
    # the last assignment wins, as the shell that grub-mkconfig sources it with reads it
    assigned = [
        no for no, line in enumerate(text.splitlines(), start=1) if _ASSIGNMENT.match(line.rstrip())
    ]
    if assigned:
        new, changed = fix_lines(text, {assigned[-1]}, lambda line: fix_shell_assignment(line, fix))
    else:
        added = fix("")
        if not added:
            return
        sep = "" if not text or text.endswith("\n") else "\n"
        new, changed = f'{text}{sep}{_CMDLINE_KEY}="{added}"\n', 1
    if changed:
        edits.write(
            DEFAULT_GRUB,
            new,
            rule=rule,
            why=f"{what} ({_CMDLINE_KEY} in {DEFAULT_GRUB}, which grub-mkconfig copies into "
            "future configurations)",
        )
        yield Edited(DEFAULT_GRUB, changed)
