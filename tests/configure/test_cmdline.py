"""The kernel command line edits on tricky text: quoting, comments, several entries, and lines
that need no change staying byte-identical."""

from __future__ import annotations

import pytest

from imageport.configure.fixes.cmdline import (
    UnsupportedLineError,
    fix_grubenv,
    fix_lines,
    fix_shell_assignment,
    fix_words_line,
    replace_argument,
)
from imageport.configure.fixes.console import with_serial_console
from support.rhel_boot import grubenv

SERIAL = "console=tty0 console=ttyS0,115200"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('GRUB_CMDLINE_LINUX="quiet"\n', f'GRUB_CMDLINE_LINUX="quiet {SERIAL}"\n'),
        ('GRUB_CMDLINE_LINUX=""\n', f'GRUB_CMDLINE_LINUX="{SERIAL}"\n'),
        ("GRUB_CMDLINE_LINUX='a b'\n", f"GRUB_CMDLINE_LINUX='a b {SERIAL}'\n"),
        ("GRUB_CMDLINE_LINUX=quiet\n", f'GRUB_CMDLINE_LINUX="quiet {SERIAL}"\n'),
        ("GRUB_CMDLINE_LINUX=\n", f'GRUB_CMDLINE_LINUX="{SERIAL}"\n'),
        (
            'export GRUB_CMDLINE_LINUX="a \\"b c\\"" # keep me\r\n',
            f'export GRUB_CMDLINE_LINUX="a \\"b c\\" {SERIAL}" # keep me\r\n',
        ),
        (
            'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX console=tty0"',
            'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX console=tty0 console=ttyS0,115200"',
        ),
        ('  GRUB_CMDLINE_LINUX="console=ttyS0"\n', '  GRUB_CMDLINE_LINUX="console=ttyS0"\n'),
    ],
)
def test_grub_defaults_keep_their_quoting(line: str, expected: str) -> None:
    assert fix_shell_assignment(line, with_serial_console) == expected


@pytest.mark.parametrize(
    "line", ["GRUB_CMDLINE_LINUX=\"a\"'b'\n", 'GRUB_CMDLINE_LINUX="unclosed\n', "X=1\n"]
)
def test_grub_defaults_in_forms_not_understood_are_refused(line: str) -> None:
    with pytest.raises(UnsupportedLineError):
        fix_shell_assignment(line, with_serial_console)


def test_serial_console_goes_last_and_tty0_is_not_repeated() -> None:
    assert with_serial_console("ro quiet") == f"ro quiet {SERIAL}"
    assert with_serial_console("ro console=tty0") == "ro console=tty0 console=ttyS0,115200"
    assert with_serial_console("") == SERIAL
    for ready in ("ro console=ttyS0", "console=hvc0", "console=ttyAMA0,115200 x"):
        assert with_serial_console(ready) == ready


def test_only_the_kernel_lines_change_and_the_rest_is_byte_identical() -> None:
    cfg = (
        "menuentry 'A' {\n\tlinux\t/vmlinuz-1 root=/dev/sda3 ro  \r\n}\n"
        "menuentry 'B' {\n    linux /vmlinuz-2 root=UUID=x ro console=ttyS0\n}\n"
    )
    new, changed = fix_lines(cfg, {2, 5}, lambda line: fix_words_line(line, with_serial_console))
    assert changed == 1
    assert new == cfg.replace("ro  \r\n", f"ro {SERIAL}  \r\n")


def test_root_is_replaced_as_a_whole_word_only() -> None:
    args = "root=/dev/sda3 ro resume=/dev/sda3 root=/dev/sda31"
    assert replace_argument(args, "root", "/dev/sda3", "UUID=u") == (
        "root=UUID=u ro resume=/dev/sda3 root=/dev/sda31"
    )


def test_grubenv_keeps_its_1024_bytes_and_its_other_variables() -> None:
    env = grubenv("saved_entry=abc", "kernelopts=root=/dev/sda3 ro", "boot_success=0").encode()
    new = fix_grubenv(env, with_serial_console)
    assert new is not None and len(new) == 1024
    assert new.startswith(
        b"# GRUB Environment Block\nsaved_entry=abc\n"
        b"kernelopts=root=/dev/sda3 ro console=tty0 console=ttyS0,115200\nboot_success=0\n###"
    )
    assert fix_grubenv(grubenv("saved_entry=abc").encode(), with_serial_console) is None
    with pytest.raises(UnsupportedLineError):
        fix_grubenv(env, lambda args: args + " x" * 600)
