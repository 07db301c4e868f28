"""IMG-ARCH on synthetic guest disks: the declared architecture against the ELF headers of the
guest's binaries (the rule is run directly, so these tests do not depend on the catalogue)."""

from __future__ import annotations

from pathlib import Path

from imageport.findings import Finding, Severity
from imageport.rules.architecture import ArchitectureRule
from imageport.rules.base import CheckOptions, ImageFacts
from imageport.rules.engine import run_rules
from imageport.service.tools.check import inspect_source
from imageport.source import FileSource
from support import guest_fixtures as gf
from support import kernel_fixtures as kt


def run(path: Path, architecture: str | None) -> list[Finding]:
    with FileSource(path) as src:
        found = inspect_source(src)
        options = CheckOptions(architecture=architecture)
        facts = ImageFacts(found.container, found.allocated_bytes, options, found.guest)
        return list(run_rules((ArchitectureRule(),), facts))


def test_an_x86_64_guest_declared_arm_is_an_error_naming_the_binary() -> None:
    (f,) = run(kt.good_guest(), "arm")
    assert f.rule_id == "IMG-ARCH" and f.severity is Severity.ERROR
    assert f.message.startswith("The image is declared arm (aarch64), but its programs are built")
    assert "built for x86_64" in f.message
    assert f.evidence == (
        "/usr/bin/sh: ELF 64-bit little-endian, e_machine 62 (x86_64)",
        "declared: arm",
    )
    assert "Register the image with the architecture x86" in f.advice
    assert "--architecture x86" in f.advice


def test_an_aarch64_guest_declared_x86_is_an_error() -> None:
    (f,) = run(kt.builtin_guest(), "x86")
    assert f.severity is Severity.ERROR
    assert "declared x86 (x86_64)" in f.message and "built for aarch64" in f.message
    assert "e_machine 183 (aarch64)" in f.evidence[0]
    assert "architecture arm" in f.advice


def test_matching_architectures_pass() -> None:
    assert run(kt.good_guest(), "x86") == []
    assert run(kt.builtin_guest(), "arm") == []


def test_a_32_bit_x86_guest_declared_x86_is_left_to_full_virt() -> None:
    assert run(kt.xen_guest(), "x86") == []
    (f,) = run(kt.xen_guest(), "arm")
    assert "built for i386" in f.message


def test_nothing_declared_nothing_checked() -> None:
    assert run(kt.good_guest(), None) == []
    assert run(gf.synthetic_guest(), None) == []


def test_an_undetected_architecture_is_a_note_not_a_failure() -> None:
    (f,) = run(gf.synthetic_guest(), "arm")  # its /usr/bin/sh has no valid ELF header
    assert f.severity is Severity.INFO
    assert "could not be detected" in f.message and "arm was not checked" in f.message
    assert "/bin/sh" in f.evidence[0]


def test_no_installed_system_is_left_to_system_disk() -> None:
    assert run(gf.empty_disk(), "arm") == []
