"""IMG-CONSOLE: the kernel's console on the serial port, so the platform's console log shows
the boot.

When the rule reports the default entry, ``console=tty0 console=ttyS0,115200`` is added to
every kernel command line that has no serial console yet (only ``console=ttyS0,115200`` where
``console=tty0`` is already there): in the generated configuration (grub.cfg's entries, Boot
Loader Specification entries, RHEL 8's ``kernelopts`` in grubenv), so that it takes effect at
the next boot without running grub-mkconfig, and in ``GRUB_CMDLINE_LINUX`` of
``/etc/default/grub``, so that the next grub-mkconfig keeps it. The serial console comes last:
the kernel makes the last ``console=`` the one ``/dev/console`` writes to. Lines that already
have a serial console (``ttyS0``, ``hvc0``, ``ttyAMA0``) stay as they are.
"""

from __future__ import annotations

from imageport.configure.edits import Edits
from imageport.configure.fixes.cmdline import (
    append_arguments,
    argument_values,
    edit_command_lines,
    unreachable_configs,
)
from imageport.guest.boot.modes import read_boot
from imageport.guest.facts.inspect import GuestFacts
from imageport.rules.boot import ConsoleRule, has_serial_console

RULE = ConsoleRule.id
SERIAL = "console=ttyS0,115200"
SCREEN = "console=tty0"


def with_serial_console(args: str) -> str:
    """``args`` with the serial console added (after ``console=tty0``), or unchanged when it
    has one."""
    consoles = argument_values(args, "console")
    if has_serial_console(consoles):
        return args
    extra = SERIAL if "tty0" in consoles else f"{SCREEN} {SERIAL}"
    return append_arguments(args, extra)


def plan_console(guest: GuestFacts, edits: Edits) -> None:
    """Add the serial console where the rule finds none."""
    boot = guest.derive(read_boot)
    default = boot.default
    if default is None:
        edits.note(RULE, "no kernel command line was found, so none was changed")
        return
    if has_serial_console(default.consoles):
        return
    # GRUB_CMDLINE_LINUX_DEFAULT may have it already (grub.cfg not regenerated since)
    pending = any(
        has_serial_console(argument_values(s.value, "console")) for s in boot.grub_defaults
    )
    edited = edit_command_lines(
        guest,
        edits,
        with_serial_console,
        rule=RULE,
        what=f"added {SCREEN} {SERIAL} to the kernel command line",
        defaults=not pending,
    )
    unreachable = unreachable_configs(guest)
    if unreachable:
        edits.note(
            RULE,
            "not changed (add console=ttyS0,115200 there by hand): " + ", ".join(unreachable),
        )
    elif not edited:
        edits.note(RULE, f"{default.source}: the default command line could not be changed")
