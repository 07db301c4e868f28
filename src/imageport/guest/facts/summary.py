"""The guest facts every report shows: architecture, kernels, boot modes.

Read through :meth:`GuestFacts.derive`, so the rules that already read kernels and boot
configuration share the same reading; a reader failing leaves that part empty rather than
failing the report.
"""

from __future__ import annotations

from dataclasses import dataclass

from imageport.errors import ImageportError
from imageport.guest.boot.kernels import read_kernels
from imageport.guest.boot.modes import read_boot
from imageport.guest.facts.cloudinit import read_cloud_init
from imageport.guest.facts.inspect import GuestFacts

_MAX_HOSTNAME_BYTES = 4096


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
    hostname: str | None = None
    #: ``installed 22.4.2``, ``installed``, or None when cloud-init is absent
    cloud_init: str | None = None


def summarize_guest(guest: GuestFacts) -> GuestSummary:
    """Architecture, kernels (newest first) and boot modes of ``guest``."""
    if guest.layout.root is None:
        return GuestSummary(None, (), ())
    try:
        text = guest.files.read_text("/etc/hostname", _MAX_HOSTNAME_BYTES) or ""
        hostname = text.strip().splitlines()[0].strip() if text.strip() else None
    except ImageportError:
        hostname = None
    try:
        ci = guest.derive(read_cloud_init)
        cloud_init = (
            (f"installed {ci.version}" if ci.version else "installed") if ci.installed else None
        )
    except ImageportError:
        cloud_init = None
    try:
        kf = guest.derive(read_kernels)
        arch = f"{kf.arch.name} ({kf.arch.path})" if kf.arch else None
        default = kf.default.version if kf.default else None
        kernels = tuple(
            KernelSummary(
                k.version,
                k.version == default,
                k.initrd.path if k.initrd else None,
                k.initrd.module_count if k.initrd else 0,
            )
            for k in kf.kernels
        )
    except ImageportError:
        arch, kernels = None, ()
    try:
        modes = guest.derive(read_boot).modes
    except ImageportError:
        modes = ()
    return GuestSummary(arch, kernels, tuple(modes), hostname, cloud_init)
