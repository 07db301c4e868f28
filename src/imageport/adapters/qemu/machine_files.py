"""The private folder of one server (``servers_dir/<server id>/``, mode 0700, owned by the
service's user) and what lives in it.

A server id names a path only after it is checked to be a UUID in its canonical form. Two small
JSON files let a restarted service find everything again: ``machine.json`` (what the machine
was made from: the stored image, its format, the disk size, the firmware; written by
``create``) and ``run.json`` (the pid and the SSH port of the QEMU that runs it, taken from the
pid file QEMU writes as it daemonizes; written at each start, removed when it ends). A pid
read back is trusted only if ``/proc/<pid>/cmdline`` is a QEMU naming this server *and* this
folder (:func:`qemu_pid`), so a reused pid is never taken for a machine.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from imageport.service.ports import MachineError

#: ``-name`` of every server's QEMU, followed by the server id.
NAME_PREFIX = "imageport-server-"
#: The longest path a unix socket may have (``sun_path`` holds 108 bytes with its NUL).
MAX_SOCKET_PATH = 107
#: Bytes a JSON file of the folder may have (a few hundred are written).
_MAX_JSON = 64 * 1024


def checked_id(server_id: str) -> str:
    """``server_id`` when it is a UUID as :func:`str` of :class:`uuid.UUID` writes it (lower
    case, with dashes); :class:`MachineError` otherwise."""
    try:
        canonical = str(uuid.UUID(server_id))
    except (ValueError, TypeError, AttributeError) as exc:
        raise MachineError(f"{server_id[:40]!r} is not a server id") from exc
    if canonical != server_id:
        raise MachineError(f"{server_id[:40]!r} is not a server id in canonical form")
    return server_id


@dataclass(frozen=True, slots=True)
class MachineRecord:
    """What ``create`` was given that a later start, copy or recovery needs."""

    image: str
    image_format: str
    disk_bytes: int
    firmware: str


@dataclass(frozen=True, slots=True)
class RunRecord:
    pid: int
    ssh_port: int


class MachineFiles:
    """The paths of one server's folder."""

    def __init__(self, servers_dir: Path, server_id: str) -> None:
        self.server_id = checked_id(server_id)
        self.servers_dir = servers_dir
        self.folder = servers_dir / self.server_id
        self.disk = self.folder / "disk.qcow2"
        self.variables = self.folder / "OVMF_VARS.fd"
        self.config_drive = self.folder / "config-2.iso"
        self.metadata = self.folder / "metadata"
        self.qmp = self.folder / "qmp.sock"
        self.serial = self.folder / "serial.sock"
        self.vnc = self.folder / "vnc.sock"
        self.console_log = self.folder / "console.log"
        self.qemu_log = self.folder / "qemu.log"
        self.machine_json = self.folder / "machine.json"
        self.run_json = self.folder / "run.json"
        self.pid_file = self.folder / "qemu.pid"

    def exists(self) -> bool:
        return self.folder.is_dir()

    def make(self) -> None:
        """Make the folder (and the servers folder), 0700; :class:`MachineError` if it
        exists (a machine is made once)."""
        self.check_socket_paths()
        self.servers_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            self.folder.mkdir(mode=0o700)
        except FileExistsError as exc:
            raise MachineError(f"server {self.server_id} has a machine already") from exc

    def check_socket_paths(self) -> None:
        """:class:`MachineError` when the socket paths are too long for a unix socket."""
        longest = max((self.qmp, self.serial, self.vnc), key=lambda p: len(os.fsencode(p)))
        if len(os.fsencode(longest)) > MAX_SOCKET_PATH:
            raise MachineError(
                f"the servers folder {self.servers_dir} is too deep: its sockets' paths "
                f"({longest}) pass the {MAX_SOCKET_PATH} bytes a unix socket may have; "
                "use a shorter data_dir"
            )

    def save_machine(self, record: MachineRecord) -> None:
        _write_json(self.machine_json, asdict(record))

    def load_machine(self) -> MachineRecord:
        data = _read_json(self.machine_json)
        if data is None:
            raise MachineError(f"server {self.server_id} has no machine")
        try:
            return MachineRecord(
                image=str(data["image"]),
                image_format=str(data["image_format"]),
                disk_bytes=int(data["disk_bytes"]),
                firmware=str(data["firmware"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise MachineError(f"{self.machine_json} is damaged: {exc}") from exc

    def save_run(self, record: RunRecord) -> None:
        _write_json(self.run_json, asdict(record))

    def load_run(self) -> RunRecord | None:
        data = _read_json(self.run_json)
        try:
            return None if data is None else RunRecord(int(data["pid"]), int(data["ssh_port"]))
        except (KeyError, TypeError, ValueError):
            return None

    def forget_run(self) -> None:
        self.run_json.unlink(missing_ok=True)
        self.pid_file.unlink(missing_ok=True)

    def daemon_pid(self) -> int | None:
        """The pid QEMU wrote to its pid file once it daemonized (None: none, or not a pid)."""
        try:
            with open(self.pid_file, "rb") as f:
                text = f.read(32).strip()
        except FileNotFoundError:
            return None
        return int(text) if text.isdigit() and len(text) < 12 else None

    def remove_sockets(self) -> None:
        """Remove the socket files a QEMU that ended left (QEMU removes them on a clean exit)."""
        for path in (self.qmp, self.serial, self.vnc):
            path.unlink(missing_ok=True)


def _write_json(path: Path, value: dict[str, object]) -> None:
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(value, f)
    partial.replace(path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as f:
            raw = f.read(_MAX_JSON + 1)
    except FileNotFoundError:
        return None
    if len(raw) > _MAX_JSON:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def qemu_server_of(pid: int, servers_dir: Path) -> str | None:
    """The server id of the process ``pid`` if it is a living QEMU of a server in
    ``servers_dir`` (its ``-name`` is ``imageport-server-<id>`` and one of its arguments is a
    path in that server's folder); None for any other process, a zombie or no process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read(4096)
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read(1 << 20).split(b"\0")
    except OSError:
        return None
    if stat[stat.rfind(b")") + 2 :][:1] in (b"Z", b"X"):
        return None
    try:
        name = argv[argv.index(b"-name") + 1].decode()
    except (ValueError, IndexError, UnicodeDecodeError):
        return None
    if not name.startswith(NAME_PREFIX):
        return None
    server_id = name[len(NAME_PREFIX) :]
    try:
        checked_id(server_id)
    except MachineError:
        return None
    folder = os.fsencode(servers_dir / server_id) + b"/"
    return server_id if any(folder in arg for arg in argv) else None


def qemu_pid(files: MachineFiles, pid: int | None) -> int | None:
    """``pid`` if it is the living QEMU of the server of ``files``, else None."""
    if pid is None or pid <= 1:
        return None
    return pid if qemu_server_of(pid, files.servers_dir) == files.server_id else None


def all_server_qemus(servers_dir: Path) -> dict[int, str]:
    """Every living QEMU of a server in ``servers_dir``: pid -> server id."""
    found: dict[int, str] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            server_id = qemu_server_of(int(entry.name), servers_dir)
            if server_id is not None:
                found[int(entry.name)] = server_id
    return found
