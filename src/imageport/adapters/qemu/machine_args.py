"""The QEMU command line of a server, and why each part is there.

* **Disks.** The system disk is the overlay in the server's folder on the stored image, given
  as an explicit block graph (:mod:`.disks`: the image read-only, its format pinned, no backing
  file of its own). The config drive, when there is one, is a read-only CD-ROM.
* **Network.** QEMU's user network on the link-local range (DHCP from 169.254.169.15; the host
  side is 169.254.169.1), ``restrict=on`` so the guest reaches nothing but what is forwarded:
  its port 22 from a loopback port of the host (``hostfwd``), and 169.254.169.254:80 to the
  metadata relay QEMU starts per connection (``guestfwd ... cmd:``, see
  :mod:`.metadata_relay`). That relay command is the only string QEMU runs; it is made of
  our own interpreter and relay paths, the socket name (hex and a UUID) and a user id:
  nothing a client or an image chose. No IPv6.
* **What cloud-init looks for.** SMBIOS system information says OpenStack Nova (as Nova's
  does) so ``ds-identify`` enables the OpenStack datasource; the machine UUID is the server id.
* **Consoles.** QMP, the serial port and VNC are unix sockets in the server's folder, with
  QEMU listening (``server=on,wait=off``; VNC with ``-vnc unix:``) so a restarted service
  connects again; nothing of QEMU listens on TCP (the SSH forward is slirp's, on 127.0.0.1).
  A standard VGA device and a USB tablet (absolute pointer) are the display's.
* **Confinement.** ``-sandbox``: obsolete system calls and resource control denied. Spawning
  must be allowed for the relay, and so must QEMU's "elevate privileges" set: it holds
  ``setsid``, which libslirp calls in the relay's child, and ``setuid``, which ``-runas`` calls
  after the filter is in place (both measured: with ``deny`` the child, or QEMU, dies of
  SIGSYS). The host starts QEMU with ``no_new_privs`` set instead (``setpriv --nnp``), so
  neither QEMU nor anything it starts can gain a privilege by running a set-uid program, and
  with ``-runas`` QEMU runs as an unprivileged user once its files and sockets are open.
* **Lifecycle.** ``-daemonize``: QEMU detaches from the service (its own session, not a
  child: the service may end and start again while machines run) once it has opened
  everything, and its first process exits with 0 or with QEMU's error on stderr, so a failed
  start is known at once; ``-pidfile`` says which process it became. ``-S``: the guest waits
  for ``cont`` until the service is attached to the serial console (so the log starts at the
  firmware). A power-off ends QEMU; a reboot resets the machine.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path

from imageport.adapters.qemu.disks import opt, overlay_blockdev
from imageport.adapters.qemu.machine_files import NAME_PREFIX, MachineFiles
from imageport.service.ports import MachineError

SANDBOX = "on,obsolete=deny,elevateprivileges=allow,spawn=allow,resourcecontrol=deny"
#: The guest network: link-local, as clouds' metadata address is.
NETWORK = "169.254.169.0/24"
HOST_ADDRESS = "169.254.169.1"
DHCP_START = "169.254.169.15"
METADATA_ADDRESS = "169.254.169.254"
#: The longest ``guestfwd`` value QEMU keeps whole.
MAX_GUESTFWD = 1023
_GUESTFWD_PREFIX = f"tcp:{METADATA_ADDRESS}:80-cmd:"
SMBIOS = "type=1,manufacturer=OpenStack Foundation,product=OpenStack Nova,family=Virtual Machine"


@dataclass(frozen=True, slots=True)
class MachineConfig:
    """Everything the command line is made of (checked by the host before it gets here)."""

    files: MachineFiles
    image: Path
    #: the QEMU block driver of the image
    driver: str
    firmware: str
    vcpus: int
    memory_mib: int
    mac: str
    config_drive: bool
    accelerator: str
    ssh_port: int
    #: the relay command (:func:`relay_command`)
    relay: str
    #: OVMF's code flash (UEFI only; the variable store is the folder's copy)
    ovmf_code: Path | None = None
    #: the user QEMU switches to once its files are open (None: stays the service's user)
    run_as: str | None = None


def relay_command(python: str, script: Path, socket_name: str, service_uid: int) -> str:
    """The command QEMU's user network runs for each guest connection to the metadata
    address: ``python -I -S <relay script> <socket name> <service uid>``, quoted for the
    shell-like splitting libslirp does (no shell runs it).

    QEMU cuts a ``guestfwd`` value at its first comma (even a doubled one) and after
    :data:`MAX_GUESTFWD` characters (both found by trying): a command that would be cut is
    refused rather than run cut."""
    parts = [python, "-I", "-S", str(script), socket_name, str(service_uid)]
    command = " ".join(shlex.quote(part) for part in parts)
    if "," in command or len(_GUESTFWD_PREFIX) + len(command) > MAX_GUESTFWD:
        raise MachineError(f"the metadata relay command would be cut by QEMU: {command}")
    return command


def machine_argv(qemu: str, config: MachineConfig) -> list[str]:
    files = config.files
    machine = "pc" if config.firmware == "bios" else "q35"
    argv = [
        qemu,
        "-name",
        NAME_PREFIX + files.server_id,
        "-uuid",
        files.server_id,
        "-nodefaults",
        "-no-user-config",
        "-sandbox",
        SANDBOX,
        "-machine",
        f"{machine},accel={config.accelerator}",
        *(["-cpu", "host"] if config.accelerator == "kvm" else []),
        "-m",
        str(config.memory_mib),
        "-smp",
        str(config.vcpus),
        "-S",
        "-daemonize",
        "-pidfile",
        str(files.pid_file),
        "-rtc",
        "base=utc",
        "-boot",
        "strict=on",
        "-action",
        "reboot=reset,shutdown=poweroff",
        "-smbios",
        SMBIOS,
        *(["-runas", config.run_as] if config.run_as else []),
    ]
    argv += _firmware(config)
    argv += _disks(config)
    argv += _network(config)
    argv += _consoles(files)
    return argv


def _firmware(config: MachineConfig) -> list[str]:
    if config.firmware == "bios":
        return []
    assert config.ovmf_code is not None  # the host found OVMF for a UEFI machine
    return [
        "-drive",
        f"if=pflash,format=raw,unit=0,readonly=on,file={opt(str(config.ovmf_code))}",
        "-drive",
        f"if=pflash,format=raw,unit=1,file={opt(str(config.files.variables))}",
    ]


def _disks(config: MachineConfig) -> list[str]:
    files = config.files
    argv = [
        "-blockdev",
        overlay_blockdev(files.disk, config.image, config.driver, "disk0"),
        "-device",
        "virtio-blk-pci,drive=disk0,bootindex=1",
    ]
    if config.config_drive:
        node = {
            "driver": "raw",
            "node-name": "config",
            "read-only": True,
            "file": {"driver": "file", "filename": str(files.config_drive), "read-only": True},
        }
        argv += ["-blockdev", json.dumps(node), "-device", "ide-cd,drive=config"]
    return argv


def _network(config: MachineConfig) -> list[str]:
    netdev = ",".join(
        [
            "user",
            "id=net0",
            "ipv6=off",
            f"net={NETWORK}",
            f"host={HOST_ADDRESS}",
            f"dhcpstart={DHCP_START}",
            "restrict=on",
            f"hostfwd=tcp:127.0.0.1:{config.ssh_port}-:22",
            f"guestfwd={_GUESTFWD_PREFIX}{config.relay}",
        ]
    )
    return ["-netdev", netdev, "-device", f"virtio-net-pci,netdev=net0,mac={config.mac}"]


def _consoles(files: MachineFiles) -> list[str]:
    def listening(name: str, path: Path) -> str:
        return f"socket,id={name},path={opt(str(path))},server=on,wait=off"

    return [
        "-chardev",
        listening("qmp", files.qmp),
        "-mon",
        "chardev=qmp,mode=control",
        "-chardev",
        listening("serial0", files.serial),
        "-serial",
        "chardev:serial0",
        "-display",
        "none",
        "-device",
        "VGA",
        "-vnc",
        f"unix:{opt(str(files.vnc))}",
        "-device",
        "qemu-xhci,id=usb",
        "-device",
        "usb-tablet,bus=usb.0",
    ]
