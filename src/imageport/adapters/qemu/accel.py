"""Which accelerator QEMU can use here: KVM when it really runs a guest, TCG otherwise.

``/dev/kvm`` opening is not enough: on machines that are themselves virtual machines, nested
KVM may make QEMU abort (an MSR it cannot set) or hang with the guest's CPU never getting past
the firmware. So the probe runs a real tiny machine with ``accel=kvm`` (no disk, 64 MiB,
SeaBIOS) and waits for the firmware to reach its end (``Booting from`` or ``No bootable
device.`` on its debug console); that takes a few tenths of a second where KVM works, and as
long under TCG. Anything else within :data:`PROBE_SECONDS` (an abort, an error, silence) means
TCG. Measured on a nested machine: KVM needed 6.5 s to get there (every exit of the guest goes
through the outer hypervisor) and a Debian guest then made no progress in 2 minutes, while TCG
took 0.3 s; so a KVM slower than the limit is no KVM. On a quieter day the same machine's KVM
took 1.7 s, and the Debian guest still stopped for good in GRUB's loading of its kernel (five
boots out of five, 200-300 s each), so the limit is a second: three times what TCG takes, and
several times what a working KVM takes to start QEMU and run SeaBIOS. And a probe that passes
on a machine that is itself virtual was seen to be followed by a guest that hung after its boot
loader, so on such a machine (:func:`nested`) ``auto`` means TCG without a probe. The answer is
kept for
the process.
"""

from __future__ import annotations

import functools
import os
import select
import signal
import subprocess
import time
from pathlib import Path

#: How long the KVM probe waits for SeaBIOS to finish (TCG needs about 0.3 s; a nested KVM
#: that needs 1.7 s runs no real guest).
PROBE_SECONDS = 1.0
_DONE = (b"No bootable device", b"Booting from ")


@functools.cache
def usable_accelerator(qemu: str) -> str:
    """``kvm`` when a machine with KVM runs its firmware to the end here and this machine is
    not itself a virtual machine, else ``tcg``."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    if nested():
        return "tcg"
    return "kvm" if _kvm_runs(qemu) else "tcg"


def nested(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this machine is itself a virtual machine (its CPUs have the ``hypervisor``
    flag): then KVM is nested, and even a probe that passes proves little. Measured here: the
    probe's SeaBIOS reached its end under KVM within the limit, and the Debian guest then hung
    right after GRUB for minutes; so ``auto`` never picks a nested KVM (``kvm`` forces it)."""
    try:
        with cpuinfo.open() as f:
            for line in f:
                if line.startswith("flags"):
                    return "hypervisor" in line.split(":", 1)[-1].split()
    except OSError:
        return False
    return False


def _kvm_runs(qemu: str) -> bool:
    argv = [
        qemu,
        "-nodefaults",
        "-no-user-config",
        "-machine",
        "pc,accel=kvm",
        "-m",
        "64",
        "-display",
        "none",
        "-no-reboot",
        "-chardev",
        "stdio,id=fw,signal=off",
        "-device",
        "isa-debugcon,iobase=0x402,chardev=fw",
    ]
    try:
        proc = subprocess.Popen(  # noqa: S603 - argument list built here, no shell
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError:
        return False
    seen = b""
    deadline = time.monotonic() + PROBE_SECONDS
    try:
        assert proc.stdout is not None  # stdout=PIPE
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([proc.stdout], [], [], left)[0]:
                break
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break  # QEMU exited: KVM failed
            seen = (seen + chunk)[-4096:]
            if any(mark in seen for mark in _DONE):
                return True
        return False
    finally:
        _end(proc)


def _end(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
