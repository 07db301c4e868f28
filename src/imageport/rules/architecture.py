"""The architecture the image is registered with against the one its programs are built for.

The user declares the architecture as the vendor's API names it (``x86`` or ``arm``, the
``architecture`` of a registration, ``imageport check --architecture``); the guest's is read from
the ELF header of its binaries (:func:`imageport.guest.facts.elf.read_architecture`, through
:func:`imageport.guest.boot.kernels.read_kernels`, the same reading the report's summary shows).
"""

from __future__ import annotations

from collections.abc import Iterator

from imageport.findings import Finding, Severity
from imageport.guest.boot.kernels import read_kernels
from imageport.guest.facts.elf import ARCH_PROBES
from imageport.rules.base import ImageFacts, Rule

#: The architectures a user may declare, and the ``uname -m`` name the platform runs for each.
DECLARED: dict[str, str] = {"x86": "x86_64", "arm": "aarch64"}
#: The declared architecture each detected one belongs to (32-bit ones included: IMG-FULL-VIRT
#: refuses them on its own). Others (ppc64, s390x, riscv64 ...) are neither; IMG-FULL-VIRT
#: reports them, and this rule stays silent on them.
FAMILY: dict[str, str] = {
    "x86_64": "x86",
    "i386": "x86",
    "x32": "x86",
    "aarch64": "arm",
    "arm": "arm",
}


class ArchitectureRule(Rule):
    """What it checks: the architecture the image is declared with (``x86`` or ``arm``, as it
    will be registered; ``imageport check --architecture``) is the one its programs are built
    for, read from the ELF header of ``/bin/sh``, ``ls`` or ``init``: ``x86_64`` (or 32-bit
    x86) for ``x86``, ``aarch64`` (or 32-bit Arm) for ``arm``. Nothing is checked when no
    architecture is declared; when none of those binaries has a readable ELF header, a note
    says the declared architecture was not checked.

    Why it matters: the platform starts the server on hosts of the declared architecture (an
    ``arm`` image on an Arm64 host, with UEFI). An x86_64 system registered as ``arm`` goes
    active, and then its servers do not boot: neither its kernel nor its programs can run there.

    How to fix: register the image with the architecture of its programs
    (``"architecture": "x86"`` or ``"arm"`` in the request, ``imageport image register
    --architecture``), or build the image from the distribution's release for the architecture
    you meant.

    Example: an x86_64 Debian image checked with ``--architecture arm`` reports "The image is
    declared arm (aarch64), but its programs are built for x86_64", with the evidence
    "/usr/bin/sh: ELF 64-bit little-endian, e_machine 62 (x86_64)".
    """

    id = "IMG-ARCH"
    severity = Severity.ERROR
    title = "The declared architecture must be the one the guest's programs are built for"
    advice = "Register the image with the architecture its programs are built for."
    title_zh = "声明的架构必须与镜像中程序的架构一致"
    advice_zh = "按镜像中程序所用的架构注册镜像。"

    def check(self, facts: ImageFacts) -> Iterator[Finding]:
        declared = facts.options.architecture
        guest = facts.installed_guest
        if declared not in DECLARED or guest is None:
            return
        arch = guest.derive(read_kernels).arch
        if arch is None:
            yield self.found(
                f"The guest's architecture could not be detected, so the declared "
                f"architecture {declared} was not checked.",
                "no ELF header could be read from any of: " + ", ".join(ARCH_PROBES),
                advice=f"Make sure the image holds a {DECLARED[declared]} system before "
                f"registering it as {declared}.",
                severity=Severity.INFO,
            )
            return
        family = FAMILY.get(arch.name)
        if family is None or family == declared:
            return
        yield self.found(
            f"The image is declared {declared} ({DECLARED[declared]}), but its programs are "
            f"built for {arch.name}: its servers would be started on {DECLARED[declared]} "
            f"hosts and would not boot.",
            f"{arch.path}: ELF {arch.bits}-bit {arch.header.byte_order}-endian, "
            f"e_machine {arch.header.machine} ({arch.name})",
            f"declared: {declared}",
            advice=f'Register the image with the architecture {family} ("architecture": '
            f'"{family}" in the request, `--architecture {family}`), not {declared}.',
        )
