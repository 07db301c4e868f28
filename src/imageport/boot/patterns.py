"""The console lines that mark a boot's progress or its failure, as regular expressions.

Each pattern names the *signal* it gives. Where they come from (all seen on this project's test
images under QEMU, or quoted from the programs' sources):

* SeaBIOS (its debug console, I/O port 0x402): ``Booting from Hard Disk...`` (trying it),
  ``Booting from 0000:7c00`` (it jumped to the boot code of sector 0),
  ``Boot failed: not a bootable disk`` (no 55AA signature), ``No bootable device.``
* OVMF/EDK II (serial console): ``BdsDxe: loading Boot0001 "..."``, ``BdsDxe: failed to load
  Boot0002 "UEFI QEMU HARDDISK ..." ... Not Found``, ``BdsDxe: No bootable option or device was
  found.``, and its fallback ``UEFI Interactive Shell`` with the ``Shell>`` prompt.
* GRUB 2: ``GNU GRUB  version 2.06`` (its menu), ``Booting `Debian GNU/Linux'``, ``error: ...``,
  ``grub rescue>`` (it could not load its normal mode), and its command line when it has no
  configuration to boot: ``Minimal BASH-like line editing is supported. ...`` then ``grub>``.
* Linux: ``Linux version 6.1.0-... (...)``, ``Kernel panic - not syncing: VFS: Unable to mount
  root fs on unknown-block(0,0)``, ``VFS: Cannot open root device ...``, ``Please append a
  correct "root=" boot option``; filesystem mount lines (``EXT4-fs (vda3): mounted filesystem``,
  ``XFS (vda2): Ending clean mount``, ``VFS: Mounted root``).
* initramfs-tools: ``Gave up waiting for root file system device.  Common problems:`` and its
  hints, ``ALERT!  UUID=... does not exist.  Dropping to a shell!``, the ``(initramfs)`` prompt;
  dracut: ``Warning: dracut-initqueue: timeout``, ``Warning: /dev/... does not exist``, the
  ``dracut:/#`` prompt.
* systemd: ``Welcome to Debian GNU/Linux 12 (bookworm)!`` (PID 1 started from the root
  filesystem), ``A start job is running for /dev/disk/by-uuid/... (1min 2s / 1min 30s)``, or
  for a device it knows only from fstab ``Job dev-disk-by\x2dlabel-data.device/start running
  (35s / no limit)`` (the line is cut in the middle with ``…`` to the console's 80 columns),
  ``Timed out waiting for device ...``, ``Dependency failed for ...``, ``You are in emergency
  mode``; getty's ``hostname login:``.
* cloud-init: ``Cloud-init v. 22.4.2 running 'init' at ...`` and ``Cloud-init v. 22.4.2
  finished at ...``.
"""

from __future__ import annotations

import re
from typing import Literal

Signal = Literal[
    "firmware",
    "boot-loader",
    "kernel",
    "root-filesystem",
    "login",
    "cloud-init-started",
    "cloud-init",
    "no-bootable-device",
    "boot-failed",
    "firmware-shell",
    "boot-loader-error",
    "boot-loader-failed",
    "kernel-panic",
    "root-problem",
    "emergency-shell",
    "waiting-for-disk",
    "disk-problem",
]

#: (signal, pattern source), tried in order on each line.
_SOURCES: tuple[tuple[Signal, str], ...] = (
    # firmware
    ("no-bootable-device", r"No bootable device|No bootable option or device was found"),
    ("boot-failed", r"Boot failed: not a bootable disk|BdsDxe: failed to load Boot"),
    ("firmware-shell", r"UEFI Interactive Shell|^Shell> ?$"),
    (
        "firmware",
        r"Booting from [0-9a-f]{4}:7c00|BdsDxe: starting Boot\w+ \"(?!EFI Internal Shell)",
    ),
    # boot loader
    ("boot-loader-failed", r"grub rescue>|Entering rescue mode|you need to load the kernel"),
    # GRUB's bare command line: no grub.cfg (or no entry in it) to boot
    ("boot-loader-failed", r"^grub>(?: |$)|Minimal BASH-like line editing is supported"),
    ("boot-loader", r"GNU GRUB +version|Welcome to GRUB|GRUB loading|^\s*Booting `"),
    ("boot-loader", r"^(?:SYSLINUX|ISOLINUX|EXTLINUX) \d|^Loading Linux "),
    ("boot-loader-error", r"^error: "),
    # kernel and root filesystem
    ("kernel", r"Linux version \d\S*"),
    ("kernel-panic", r"Kernel panic - not syncing"),
    ("root-problem", r"VFS: (?:Cannot open root device|Unable to mount root)"),
    ("root-problem", r"Please append a correct \"root=\"|No filesystem could mount root"),
    ("emergency-shell", r"Dropping to a shell|^\(initramfs\)|dracut:/#"),
    ("emergency-shell", r"You are in emergency mode|Give root password for maintenance"),
    ("emergency-shell", r"Press Enter for maintenance|Entering emergency mode"),
    ("root-problem", r"Gave up waiting for (?:root|suspend/resume) (?:file system )?device"),
    ("root-problem", r"ALERT! .* does not exist|Warning: /dev/\S+ does not exist"),
    ("root-problem", r"^\s*- (?:Boot args|Check rootdelay|Check root=|Missing modules)"),
    ("root-problem", r"dracut-initqueue: timeout|Could not boot\.$"),
    ("root-filesystem", r"EXT4-fs \([^)]+\): mounted filesystem|XFS \([^)]+\): Ending clean"),
    ("root-filesystem", r"VFS: Mounted root|Run /sbin/init as init process"),
    ("root-filesystem", r"^Welcome to (?!.*(?:[Ii]nitramfs|[Ii]nitrd|dracut)).+!$"),
    # systemd waiting for a disk
    ("waiting-for-disk", r"A start job is running for (?:/dev/|dev-)"),
    # systemd 252 names a device unit that has no description yet by its unit name
    ("waiting-for-disk", r"\bJob dev-\S+ running \("),
    ("disk-problem", r"Timed out waiting for device|Dependency failed for"),
    ("disk-problem", r"Failed to mount "),
    # the end of a boot
    ("login", r"\blogin:(?: |$)"),
    ("cloud-init", r"Cloud-init v\. \S+ finished at"),
    ("cloud-init-started", r"Cloud-init v\. \S+ running"),
)
#: (signal, pattern), tried in order on each line.
PATTERNS: tuple[tuple[Signal, re.Pattern[str]], ...] = tuple(
    (signal, re.compile(pattern)) for signal, pattern in _SOURCES
)


def signals_of(line: str) -> list[Signal]:
    """The signals ``line`` gives, in the order of :data:`PATTERNS`, each once (a prompt and a
    message written after it share a line: ``host login: Cloud-init v. 22.4.2 finished``)."""
    found: list[Signal] = []
    for signal, pattern in PATTERNS:
        if signal not in found and pattern.search(line):
            found.append(signal)
    return found
