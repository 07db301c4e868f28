"""The QEMU boot runner: a real machine booting a disk with no boot code (SeaBIOS finds no
bootable device in a few seconds) shows what the runner promises: the image is not written, the
machine has no network socket and its private directory is gone afterwards, the display is saved
as PNG. The KVM probe and the bounded console buffer are tested on their own."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from pathlib import Path

import pytest

from imageport.adapters.qemu import accel
from imageport.adapters.qemu.boot_runner import QemuBootRunner
from imageport.adapters.qemu.capture import ConsoleBuffer
from imageport.adapters.qemu.firmware import find_ovmf
from imageport.service.ports import BootError

needs_qemu = pytest.mark.skipif(
    subprocess.run(["which", "qemu-system-x86_64"], capture_output=True).returncode != 0,
    reason="qemu-system-x86_64 is not installed (scripts/install)",
)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _qemu_children() -> list[int]:
    """Our qemu-system processes (children of this test process)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        comm = text[text.index("(") + 1 : text.rindex(")")]
        ppid = int(text[text.rindex(")") + 2 :].split()[1])
        if ppid == os.getpid() and comm.startswith("qemu-system"):
            found.append(int(entry.name))
    return found


def _inet_socket_inodes() -> set[str]:
    inodes = set()
    for table in ("tcp", "tcp6", "udp", "udp6"):
        path = Path("/proc/net", table)
        if path.exists():
            for row in path.read_text().splitlines()[1:]:
                inodes.add(row.split()[9])
    return inodes


@needs_qemu
def test_a_disk_without_boot_code_boots_to_no_bootable_device_and_leaves_no_trace(
    tmp_path: Path,
) -> None:
    image = tmp_path / "fs.raw"
    with open(image, "wb") as f:
        f.truncate(64 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    before = _digest(image), image.stat().st_mtime_ns
    seen: dict[str, object] = {}

    def settled(serial: bytes, firmware_log: bytes) -> bool:
        # looked at while the machine runs: its sockets and its private directory
        (pid,) = _qemu_children()
        sockets = {
            os.readlink(f"/proc/{pid}/fd/{fd}")[8:-1]
            for fd in os.listdir(f"/proc/{pid}/fd")
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:[")
        }
        seen["inet"] = sockets & _inet_socket_inodes()
        seen["dir"] = Path(os.readlink(f"/proc/{pid}/cwd"))
        seen["mode"] = stat.S_IMODE(os.stat(f"/proc/{pid}/cwd").st_mode)
        return b"No bootable device" in firmware_log

    shot = tmp_path / "screen.png"
    run = QemuBootRunner().boot(image, "raw", "bios", timeout=60, settled=settled, screenshot=shot)
    assert run.ended == "settled" and run.seconds < 30
    assert b"Boot failed: not a bootable disk" in run.firmware_log
    assert run.serial == b""
    assert seen["inet"] == set()  # QMP and the consoles are unix sockets only
    assert seen["mode"] == 0o700 and not Path(str(seen["dir"])).exists()
    assert run.screenshot == shot and shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert (_digest(image), image.stat().st_mtime_ns) == before
    assert _qemu_children() == []


@needs_qemu
def test_a_format_qemu_cannot_read_is_refused_before_starting(tmp_path: Path) -> None:
    with pytest.raises(BootError, match="QEMU does not read the zvhd2 format"):
        QemuBootRunner().boot(
            tmp_path / "x", "zvhd2", "bios", timeout=10, settled=lambda s, f: True, screenshot=None
        )


def test_missing_tools_and_firmware_say_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(BootError, match="apt-get install qemu-system-x86"):
        QemuBootRunner(qemu=str(tmp_path / "no-qemu")).ready("bios")
    with pytest.raises(BootError, match="apt-get install ovmf"):
        find_ovmf(((str(tmp_path / "CODE.fd"), str(tmp_path / "VARS.fd")),))


def _fake_qemu(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


@pytest.mark.skipif(not os.access("/dev/kvm", os.R_OK | os.W_OK), reason="no usable /dev/kvm")
def test_kvm_counts_only_when_a_machine_runs_its_firmware_to_the_end_quickly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    finishes = _fake_qemu(tmp_path, "finishes", "echo 'SeaBIOS'; echo 'No bootable device.'")
    aborts = _fake_qemu(tmp_path, "aborts", "echo 'kvm: error: MSR 0x10a' >&2; exit 1")
    hangs = _fake_qemu(tmp_path, "hangs", "echo 'SeaBIOS (version 1.16)'; exec sleep 30")
    monkeypatch.setattr(accel, "nested", lambda: True)  # a virtual machine: not even probed
    assert accel.usable_accelerator(finishes) == "tcg"
    accel.usable_accelerator.cache_clear()
    monkeypatch.setattr(accel, "nested", lambda: False)  # bare metal: the probe decides
    assert accel.usable_accelerator(finishes) == "kvm"
    assert accel.usable_accelerator(aborts) == "tcg"
    assert accel.usable_accelerator(hangs) == "tcg"  # after PROBE_SECONDS, not 30 s


def test_the_console_buffer_keeps_a_head_and_a_tail() -> None:
    buf = ConsoleBuffer(head=4, tail=6)
    for chunk in (b"Linux", b" version ", b"...", b"login: "):
        buf.append(chunk)
    assert buf.total == 24
    assert buf.data == b"Linu\n[... 14 bytes left out ...]\nogin: "
    small = ConsoleBuffer(head=64, tail=64)
    small.append(b"all of it")
    assert small.data == b"all of it"


def test_a_machine_that_is_itself_virtual_never_picks_kvm_by_itself(tmp_path: Path) -> None:
    from imageport.adapters.qemu.accel import nested

    virtual = tmp_path / "virtual"
    virtual.write_text("processor\t: 0\nflags\t\t: fpu vme sse2 hypervisor lahf_lm\n")
    bare = tmp_path / "bare"
    bare.write_text("processor\t: 0\nflags\t\t: fpu vme sse2 vmx lahf_lm\n")
    assert nested(virtual) and not nested(bare)
    assert not nested(tmp_path / "missing")
