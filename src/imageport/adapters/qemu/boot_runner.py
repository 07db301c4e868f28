"""Boot a local image file in a throw-away QEMU machine: :class:`QemuBootRunner` implements
:class:`~imageport.service.ports.BootRunner`.

What the machine is, and why:

* **The file is never written.** The disk is a qcow2 overlay in a private temporary directory;
  its backing file is the image, its format pinned (``backing_fmt``) from imageport's own probe,
  and the whole block graph is given to QEMU explicitly with ``-blockdev`` (the image node
  read-only, with no backing file of its own): QEMU never guesses a format or follows a name
  found inside the image.
* **Nothing reaches it and it reaches nothing.** ``-nodefaults`` and ``-nic none``: no network
  device; ``-display none``: no VNC or other display server; QMP and the consoles are unix
  sockets in that directory (mode 0700), which *we* listen on and QEMU connects to. QEMU runs
  with its seccomp sandbox on (no spawning, no privilege changes, no obsolete system calls).
* **Evidence.** The first serial port and the firmware's debug port (0x402, where SeaBIOS
  logs) are captured with a bounded head and tail (:mod:`.capture`); a standard VGA device
  lets QMP's ``screendump`` save the display as PNG at the end.
* **Bounded.** 1 GiB of memory, two vCPUs, a hard timeout; a reboot or power-off pauses the
  machine (``-action``) so its last screen can still be saved; QEMU runs in its own process
  group, killed when the boot ends whatever happened; the directory is removed.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from imageport.adapters.image_worker import QEMU_DRIVERS
from imageport.adapters.qemu.accel import usable_accelerator
from imageport.adapters.qemu.capture import (
    FIRMWARE_HEAD,
    FIRMWARE_TAIL,
    SERIAL_HEAD,
    SERIAL_TAIL,
    ConsoleBuffer,
)
from imageport.adapters.qemu.disks import (
    create_overlay,
    opt,
    overlay_blockdev,
    virtual_size,
)
from imageport.adapters.qemu.firmware import OVMF_PAIRS, find_ovmf
from imageport.adapters.qemu.qmp import Qmp
from imageport.service.ports import BootError, BootRun

MEMORY_MIB = 1024
#: Two vCPUs: under TCG each is a host thread, and systemd starts units in parallel.
VCPUS = 2
#: Seconds QEMU has to start and connect its sockets.
START_SECONDS = 30.0
#: How often the caller's verdict is asked, and QEMU's run state.
SETTLE_EVERY = 1.0
STATUS_EVERY = 2.0
_SANDBOX = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"


class QemuBootRunner:
    def __init__(
        self,
        qemu: str = "qemu-system-x86_64",
        qemu_img: str = "qemu-img",
        *,
        accelerator: str = "auto",
        ovmf_pairs: tuple[tuple[str, str], ...] = OVMF_PAIRS,
    ) -> None:
        self.qemu = qemu
        self.qemu_img = qemu_img
        self.accelerator = accelerator
        self.ovmf_pairs = ovmf_pairs

    def ready(self, firmware: str) -> None:
        for tool, package in ((self.qemu, "qemu-system-x86"), (self.qemu_img, "qemu-utils")):
            if shutil.which(tool) is None:
                raise BootError(
                    f"booting needs {tool}, which is missing: apt-get install {package}"
                )
        if firmware == "uefi":
            find_ovmf(self.ovmf_pairs)

    def boot(
        self,
        image: Path,
        image_format: str,
        firmware: str,
        *,
        timeout: float,
        settled: Callable[[bytes, bytes], bool],
        screenshot: Path | None,
    ) -> BootRun:
        self.ready(firmware)
        driver = QEMU_DRIVERS.get(image_format)
        if driver is None:
            raise BootError(
                f"QEMU does not read the {image_format} format: convert the image first "
                "(imageport convert FILE OUT.qcow2)"
            )
        accel = self.accelerator
        if accel == "auto":
            accel = usable_accelerator(self.qemu)
        with _private_dir() as work:
            overlay = self._overlay(work, image.resolve(), driver)
            listeners = {name: _listen(work / f"{name}.sock") for name in ("qmp", "serial", "fw")}
            argv = [self.qemu, *self._machine(work, firmware, accel)]
            argv += _disk(overlay, image.resolve(), driver)
            argv += _consoles(work)
            with _qemu(argv, work) as proc:
                return _watch(proc, listeners, work, firmware, accel, timeout, settled, screenshot)

    def _overlay(self, work: Path, image: Path, driver: str) -> Path:
        size = virtual_size(self.qemu_img, image, driver, BootError)
        overlay = work / "disk.qcow2"
        create_overlay(self.qemu_img, overlay, image, driver, size, BootError)
        return overlay

    def _machine(self, work: Path, firmware: str, accel: str) -> list[str]:
        argv = [
            "-nodefaults",
            "-no-user-config",
            "-sandbox",
            _SANDBOX,
            "-name",
            "imageport-boot",
            "-m",
            str(MEMORY_MIB),
            "-smp",
            str(VCPUS),
            "-nic",
            "none",
            "-display",
            "none",
            "-device",
            "VGA",
            "-boot",
            "strict=on",
            "-action",
            "reboot=shutdown,shutdown=pause",
        ]
        if firmware == "bios":
            return ["-machine", f"pc,accel={accel}", *argv]
        ovmf = find_ovmf(self.ovmf_pairs)
        variables = work / "OVMF_VARS.fd"
        shutil.copyfile(ovmf.vars_template, variables)
        return [
            "-machine",
            f"q35,accel={accel}",
            *argv,
            "-drive",
            f"if=pflash,format=raw,unit=0,readonly=on,file={opt(str(ovmf.code))}",
            "-drive",
            f"if=pflash,format=raw,unit=1,file={opt(str(variables))}",
        ]


def _disk(overlay: Path, image: Path, driver: str) -> list[str]:
    return [
        "-blockdev",
        overlay_blockdev(overlay, image, driver, "disk0"),
        "-device",
        "virtio-blk-pci,drive=disk0,bootindex=1",
    ]


def _consoles(work: Path) -> list[str]:
    """QMP, the first serial port and the firmware debug port, each a socket QEMU connects to."""
    return [
        "-chardev",
        f"socket,id=qmp,path={opt(str(work / 'qmp.sock'))}",
        "-mon",
        "chardev=qmp,mode=control",
        "-chardev",
        f"socket,id=serial0,path={opt(str(work / 'serial.sock'))}",
        "-serial",
        "chardev:serial0",
        "-chardev",
        f"socket,id=fw,path={opt(str(work / 'fw.sock'))}",
        "-device",
        "isa-debugcon,iobase=0x402,chardev=fw",
    ]


@contextlib.contextmanager
def _private_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="imageport-boot-"))  # mode 0700
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _listen(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(1)
    return sock


@contextlib.contextmanager
def _qemu(argv: list[str], work: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(work / "qemu.log", "wb") as log:
        proc = subprocess.Popen(  # noqa: S603 - argument list built here, no shell
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd=work,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _qemu_message(work: Path) -> str:
    try:
        data = (work / "qemu.log").read_bytes()[-2000:]
    except OSError:
        return ""
    return data.decode(errors="replace").strip()


def _accept(
    listeners: dict[str, socket.socket], proc: subprocess.Popen[bytes], work: Path
) -> dict[str, socket.socket]:
    """The connection QEMU made to each listener, or :class:`BootError` if it never did."""
    conns: dict[str, socket.socket] = {}
    deadline = time.monotonic() + START_SECONDS
    while len(conns) < len(listeners):
        waiting = [s for name, s in listeners.items() if name not in conns]
        ready = select.select(waiting, [], [], 0.2)[0]
        for name, sock in listeners.items():
            if sock in ready:
                conns[name], _ = sock.accept()
        if len(conns) < len(listeners) and (proc.poll() is not None or time.monotonic() > deadline):
            for conn in conns.values():
                conn.close()
            raise BootError(f"QEMU did not start: {_qemu_message(work) or 'no message'}")
    for sock in listeners.values():
        sock.close()
    return conns


def _watch(
    proc: subprocess.Popen[bytes],
    listeners: dict[str, socket.socket],
    work: Path,
    firmware: str,
    accel: str,
    timeout: float,
    settled: Callable[[bytes, bytes], bool],
    screenshot: Path | None,
) -> BootRun:
    t0 = time.monotonic()
    conns = _accept(listeners, proc, work)
    try:
        qmp = Qmp(conns["qmp"])
    except BootError:
        for conn in conns.values():
            conn.close()
        raise
    serial = ConsoleBuffer(SERIAL_HEAD, SERIAL_TAIL)
    fwlog = ConsoleBuffer(FIRMWARE_HEAD, FIRMWARE_TAIL)
    buffers = {conns["serial"]: serial, conns["fw"]: fwlog}
    deadline = t0 + timeout
    last_settle = last_status = t0
    ended = "timeout"
    try:
        while (now := time.monotonic()) < deadline:
            for conn in select.select(list(buffers), [], [], min(0.5, deadline - now))[0]:
                chunk = conn.recv(65536)
                if chunk:
                    buffers[conn].append(chunk)
                else:
                    del buffers[conn]
            now = time.monotonic()
            if proc.poll() is not None:
                ended = "qemu-exited"
                break
            if now - last_settle >= SETTLE_EVERY:
                last_settle = now
                if settled(serial.data, fwlog.data):
                    ended = "settled"
                    break
            if now - last_status >= STATUS_EVERY:
                last_status = now
                if _status(qmp, proc) != "running":
                    ended = "guest-stopped" if proc.poll() is None else "qemu-exited"
                    break
        seconds = time.monotonic() - t0
        shot = _screendump(qmp, work, screenshot) if ended != "qemu-exited" else None
        with contextlib.suppress(BootError, OSError):
            qmp.execute("quit")
    finally:
        qmp.close()
        for conn in conns.values():
            conn.close()
    return BootRun(
        firmware=firmware,
        accelerator=accel,
        serial=serial.data,
        firmware_log=fwlog.data,
        seconds=round(seconds, 1),
        ended=ended,
        screenshot=shot,
        qemu_message=_qemu_message(work) if ended == "qemu-exited" else "",
    )


def _status(qmp: Qmp, proc: subprocess.Popen[bytes]) -> str:
    """QEMU's run state (``running``, ``shutdown``, ``paused`` ...); ``exited`` when QEMU
    stopped answering because it is gone."""
    try:
        status = qmp.execute("query-status").get("status")
    except BootError:
        if proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(2.0)
        if proc.poll() is not None:
            return "exited"
        raise
    return str(status)


def _screendump(qmp: Qmp, work: Path, target: Path | None) -> Path | None:
    """Save the display as PNG to ``target`` (through the private directory); None when not
    asked or QEMU could not."""
    if target is None:
        return None
    png = work / "screen.png"
    try:
        qmp.execute("screendump", {"filename": str(png), "format": "png"})
        shutil.copyfile(png, target)
    except (BootError, OSError):
        return None
    return target
