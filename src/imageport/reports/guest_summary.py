"""The guest facts every report shows: architecture, kernels, boot modes.

Read through :meth:`GuestFacts.derive`, so the rules that already read kernels and boot
configuration share the same reading; a reader failing leaves that part empty rather than
failing the report.
"""

from __future__ import annotations

from dataclasses import dataclass

from imageport.errors import ImageportError
from imageport.guest.boot import read_boot
from imageport.guest.facts import GuestFacts
from imageport.guest.kernels import read_kernels


@dataclass(frozen=True, slots=True)
class KernelSummary:
    version: str
    default: bool
    initrd: str | None
    initrd_modules: int


@dataclass(frozen=True, slots=True)
class GuestSummary:
    architecture: str | None
    kernels: tuple[KernelSummary, ...]
    boot_modes: tuple[str, ...]


def summarize_guest(guest: GuestFacts) -> GuestSummary:
    """Architecture, kernels (newest first) and boot modes of ``guest``."""
    if guest.layout.root is None:
        return GuestSummary(None, (), ())
    try:
        kf = guest.derive(read_kernels)
        arch = f"{kf.arch.name} ({kf.arch.path})" if kf.arch else None
        default = kf.default.version if kf.default else None
        kernels = tuple(
            KernelSummary(k.version, k.version == default, k.initrd.path if k.initrd else None,
                          k.initrd.module_count if k.initrd else 0)
            for k in kf.kernels
        )
    except ImageportError:
        arch, kernels = None, ()
    try:
        modes = guest.derive(read_boot).modes
    except ImageportError:
        modes = ()
    return GuestSummary(arch, kernels, tuple(modes))
