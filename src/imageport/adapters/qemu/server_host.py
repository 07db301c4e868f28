"""Servers as QEMU virtual machines on this machine: :class:`QemuServerHost` implements
:class:`~imageport.service.ports.ServerHost`.

Each server has a private folder (:mod:`.machine_files`) holding its system disk (a qcow2
overlay on the stored image, :mod:`.disks`), its UEFI variable store (kept across reboots), its
metadata documents and config drive (:mod:`.metadata_tree`, :mod:`.config_drive`), the
sockets of its running QEMU and its console log (:mod:`.console_log`). The command line and the
reasons for each part of it are in :mod:`.machine_args`.

A running machine is followed by a thread (:mod:`.watcher`) and answered by a metadata service
of its own (:mod:`.metadata_service`), both in this process. QEMU itself is not a child the
service kills when it exits: it runs in its own session, so a restarted service finds it with
:meth:`QemuServerHost.recover` (re-attached when alive, its folder removed when the server is
not known any more). Operations on one server are serialised; different servers do not wait
for each other.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imageport.adapters.image_worker import QEMU_DRIVERS
from imageport.adapters.qemu.accel import usable_accelerator
from imageport.adapters.qemu.config_drive import make_config_drive
from imageport.adapters.qemu.console_log import ConsoleLog, last_lines
from imageport.adapters.qemu.disks import copy_sparse, create_overlay, virtual_size
from imageport.adapters.qemu.firmware import FIRMWARES, OVMF_PAIRS, Ovmf, find_ovmf
from imageport.adapters.qemu.machine_args import MachineConfig, machine_argv, relay_command
from imageport.adapters.qemu.machine_files import (
    MachineFiles,
    MachineRecord,
    RunRecord,
    all_server_qemus,
    checked_id,
    qemu_pid,
)
from imageport.adapters.qemu.metadata_service import MetadataService, socket_name
from imageport.adapters.qemu.metadata_tree import MetadataTree
from imageport.adapters.qemu.privileges import RunAs, relay_python, relay_script, run_as
from imageport.adapters.qemu.qemu_process import (
    END_SECONDS,
    PORT_TAKEN,
    connect,
    free_port,
    kill,
    launch,
    wait_gone,
)
from imageport.adapters.qemu.qmp import Qmp
from imageport.adapters.qemu.watcher import MachineWatcher
from imageport.service.ports import (
    BootError,
    ConsoleSession,
    DiskCopy,
    MachineError,
    MachineSpec,
    MachineState,
)
from imageport.settings import Settings

#: Sane bounds, whatever the service checked before (a flavor, the host's limits).
MAX_VCPUS = 64
MIN_MEMORY_MIB = 64
MAX_MEMORY_MIB = 256 * 1024
MAX_DISK_BYTES = 1024 << 30
#: Seconds a stop may give the guest to power off.
MAX_STOP_SECONDS = 3600.0
#: Tries at a free loopback port for the SSH forward (another program may take one first).
PORT_TRIES = 3
_MAC = re.compile(r"[0-9a-f][02468ace](:[0-9a-f]{2}){5}")

log = logging.getLogger("imageport.servers")


@dataclass(slots=True)
class _Running:
    pid: int
    ssh_port: int
    watcher: MachineWatcher
    metadata: MetadataService


class QemuServerHost:
    """Runs servers with ``qemu`` in ``settings.servers_dir``; calls :attr:`on_stopped` with a
    server id whenever a machine ends by itself (not when :meth:`stop` or :meth:`destroy`
    ends it). The wiring may set :attr:`on_stopped` after construction."""

    def __init__(
        self,
        settings: Settings,
        on_stopped: Callable[[str], None] | None = None,
        *,
        qemu: str = "qemu-system-x86_64",
        qemu_img: str = "qemu-img",
        xorriso: str = "xorriso",
        setpriv: str = "setpriv",
        ovmf_pairs: tuple[tuple[str, str], ...] = OVMF_PAIRS,
    ) -> None:
        self.settings = settings
        self.on_stopped = on_stopped
        self.servers_dir = Path(os.path.abspath(settings.servers_dir))
        self.qemu = qemu
        self.qemu_img = qemu_img
        self.xorriso = xorriso
        self.setpriv = setpriv
        self.ovmf_pairs = ovmf_pairs
        self._lock = threading.Lock()
        self._running: dict[str, _Running] = {}
        self._busy: dict[str, threading.Lock] = {}

    # -- the port ------------------------------------------------------------------------------

    def ready(self) -> None:
        tools = (
            (self.qemu, "qemu-system-x86"),
            (self.qemu_img, "qemu-utils"),
            (self.xorriso, "xorriso"),
            (self.setpriv, "util-linux"),
        )
        for tool, package in tools:
            if shutil.which(tool) is None:
                raise MachineError(
                    f"servers need {tool}, which is missing: apt-get install {package}"
                )
        self._accelerator()
        user = run_as(self.settings.server_user)
        relay_python(user)
        relay_script(user)

    def create(self, spec: MachineSpec) -> None:
        _check_spec(spec)
        files = MachineFiles(self.servers_dir, spec.server_id)
        driver = QEMU_DRIVERS[spec.image_format]
        image = Path(os.path.abspath(spec.image))
        with self._exclusive(spec.server_id):
            size = virtual_size(self.qemu_img, image, driver, MachineError)
            if spec.disk_bytes < size:
                raise MachineError(
                    f"the system disk ({spec.disk_bytes} bytes) is smaller than the image "
                    f"({size} bytes)"
                )
            ovmf = self._ovmf() if spec.firmware == "uefi" else None
            files.make()
            try:
                create_overlay(
                    self.qemu_img, files.disk, image, driver, spec.disk_bytes, MachineError
                )
                files.disk.chmod(0o600)
                if ovmf is not None:
                    shutil.copyfile(ovmf.vars_template, files.variables)
                    files.variables.chmod(0o600)
                files.save_machine(
                    MachineRecord(str(image), spec.image_format, spec.disk_bytes, spec.firmware)
                )
                self._write_metadata(files, spec)
            except BaseException:
                shutil.rmtree(files.folder, ignore_errors=True)
                raise

    def start(self, spec: MachineSpec) -> MachineState:
        _check_spec(spec)
        files = MachineFiles(self.servers_dir, spec.server_id)
        with self._exclusive(spec.server_id):
            if spec.server_id in self._running:
                return self.state(spec.server_id)
            if not files.disk.is_file():
                raise MachineError(f"server {spec.server_id} has no machine: create it first")
            files.check_socket_paths()
            record = files.load_machine()
            tree = self._write_metadata(files, spec)
            user = run_as(self.settings.server_user)
            metadata = self._metadata_service(files, tree, user)
            try:
                return self._power_on(files, record, spec, user, metadata)
            except BaseException:
                metadata.close()
                raise

    def state(self, server_id: str) -> MachineState:
        checked_id(server_id)
        with self._lock:
            running = self._running.get(server_id)
        if running is None:
            return MachineState(server_id, running=False)
        return MachineState(server_id, running=True, ssh_port=running.ssh_port, pid=running.pid)

    def stop(self, server_id: str, *, hard: bool, timeout: float) -> None:
        files = MachineFiles(self.servers_dir, server_id)
        timeout = min(max(timeout, 0.0), MAX_STOP_SECONDS)
        with self._exclusive(server_id):
            running = self._running.get(server_id)
            if running is None:
                self._kill_strays(files)
                return
            running.watcher.stopping = True
            ended = running.watcher.ended
            if hard:
                with contextlib.suppress(MachineError):  # QEMU may close before it answers
                    self._qmp(files, "quit")
                if ended.wait(END_SECONDS):
                    return
            else:
                with contextlib.suppress(MachineError):
                    self._qmp(files, "system_powerdown")
                if ended.wait(timeout):
                    return
                log.info("server %s: no power-off in %.0f s, pulling the plug", server_id, timeout)
            kill(running.pid, files)
            if not ended.wait(END_SECONDS):
                raise MachineError(f"the QEMU of server {server_id} did not end")

    def reboot(self, server_id: str, *, hard: bool) -> None:
        files = MachineFiles(self.servers_dir, server_id)
        with self._exclusive(server_id):
            if server_id not in self._running:
                raise MachineError("the machine is off")
            if hard:
                self._qmp(files, "system_reset")
            else:
                keys = [{"type": "qcode", "data": key} for key in ("ctrl", "alt", "delete")]
                self._qmp(files, "send-key", {"keys": keys})

    def destroy(self, server_id: str) -> None:
        files = MachineFiles(self.servers_dir, server_id)
        self.stop(server_id, hard=True, timeout=0)
        with self._exclusive(server_id):
            if files.exists():
                shutil.rmtree(files.folder)
        with self._lock:
            self._busy.pop(server_id, None)

    def console_output(self, server_id: str, lines: int | None) -> str:
        files = MachineFiles(self.servers_dir, server_id)
        if not files.exists():
            raise MachineError(f"server {server_id} has no machine")
        return last_lines(files.console_log, lines)

    def attach_console(self, server_id: str) -> ConsoleSession:
        return self._running_machine(server_id).watcher.fanout.attach()

    def vnc_socket(self, server_id: str) -> Path:
        self._running_machine(server_id)
        return MachineFiles(self.servers_dir, server_id).vnc

    def copy_disk(self, server_id: str, target_dir: Path) -> DiskCopy:
        files = MachineFiles(self.servers_dir, server_id)
        with self._exclusive(server_id):
            record = files.load_machine()
            top = target_dir / f"server-{server_id}-{secrets.token_hex(4)}.qcow2"
            try:
                if server_id in self._running:
                    # vm_stop flushes every block device: the overlay file is whole
                    self._qmp(files, "stop")
                    try:
                        copy_sparse(files.disk, top)
                    finally:
                        self._qmp(files, "cont")
                else:
                    copy_sparse(files.disk, top)
            except BaseException:
                top.unlink(missing_ok=True)
                raise
        return DiskCopy(
            top=top,
            base=Path(record.image),
            base_format=record.image_format,
            virtual_size=record.disk_bytes,
        )

    def discard_copy(self, copy: DiskCopy) -> None:
        copy.top.unlink(missing_ok=True)

    def recover(self, known: Sequence[str]) -> dict[str, MachineState]:
        wanted = {checked_id(server_id) for server_id in known}
        for pid, server_id in all_server_qemus(self.servers_dir).items():
            if server_id not in wanted:
                log.warning("server %s is not known: killing its QEMU (pid %d)", server_id, pid)
                kill(pid, MachineFiles(self.servers_dir, server_id))
                wait_gone(pid, MachineFiles(self.servers_dir, server_id))
        if self.servers_dir.is_dir():
            for entry in self.servers_dir.iterdir():
                with contextlib.suppress(MachineError):
                    if checked_id(entry.name) not in wanted and entry.is_dir():
                        log.warning("server %s is not known: removing its files", entry.name)
                        shutil.rmtree(entry)
        for server_id in sorted(wanted):
            with self._exclusive(server_id):
                if server_id not in self._running:
                    self._reattach(MachineFiles(self.servers_dir, server_id))
        return {server_id: self.state(server_id) for server_id in known}

    def close(self) -> None:
        """Stop following the machines, which keep running (the service is shutting down; a
        new one finds them with :meth:`recover`)."""
        with self._lock:
            running = list(self._running.values())
            self._running.clear()
        for machine in running:
            machine.watcher.detach()
            machine.metadata.close()

    # -- starting --------------------------------------------------------------------------------

    def _power_on(
        self,
        files: MachineFiles,
        record: MachineRecord,
        spec: MachineSpec,
        user: RunAs | None,
        metadata: MetadataService,
    ) -> MachineState:
        relay = relay_command(relay_python(user), relay_script(user), metadata.name, os.geteuid())
        ovmf = self._ovmf() if record.firmware == "uefi" else None
        if ovmf is not None and not files.variables.exists():
            shutil.copyfile(ovmf.vars_template, files.variables)
            files.variables.chmod(0o600)
        for attempt in range(1, PORT_TRIES + 1):
            config = MachineConfig(
                files=files,
                image=Path(record.image),
                driver=QEMU_DRIVERS[record.image_format],
                firmware=record.firmware,
                vcpus=spec.vcpus,
                memory_mib=spec.memory_mib,
                mac=spec.mac,
                config_drive=spec.config_drive,
                accelerator=self._accelerator(),
                ssh_port=free_port(),
                relay=relay,
                ovmf_code=ovmf.code if ovmf is not None else None,
                run_as=user.name if user is not None else None,
            )
            argv = [self.setpriv, "--nnp", "--", *machine_argv(self.qemu, config)]
            try:
                pid = launch(files, argv)
                break
            except MachineError as exc:
                # another program took the SSH port between our pick and QEMU's bind
                if PORT_TAKEN not in str(exc) or attempt == PORT_TRIES:
                    raise
        try:
            files.save_run(RunRecord(pid, config.ssh_port))
            qmp = Qmp(connect(files.qmp, 5.0), error=MachineError)
            try:
                self._follow(files, pid, config.ssh_port, connect(files.serial, 5.0), metadata)
                qmp.execute("cont")
            finally:
                qmp.close()
        except BaseException:
            self._abort(files, pid)
            raise
        log.info(
            "server %s: QEMU runs (pid %d, %s, ssh port %d)",
            files.server_id,
            pid,
            config.accelerator,
            config.ssh_port,
        )
        return self.state(files.server_id)

    def _follow(
        self,
        files: MachineFiles,
        pid: int,
        ssh_port: int,
        serial: socket.socket,
        metadata: MetadataService,
    ) -> None:
        server_id = files.server_id

        def alive() -> bool:
            return qemu_pid(files, pid) is not None

        def cleanup() -> None:
            with self._lock:
                if self._running.get(server_id) is running:
                    del self._running[server_id]
            metadata.close()
            files.forget_run()
            files.remove_sockets()

        def stopped_by_itself() -> None:
            callback = self.on_stopped
            if callback is not None:
                try:
                    callback(server_id)
                except Exception:
                    log.exception("on_stopped(%s) failed", server_id)

        watcher = MachineWatcher(
            server_id,
            files.serial,
            serial,
            ConsoleLog(files.console_log),
            alive,
            cleanup=cleanup,
            stopped_by_itself=stopped_by_itself,
        )
        running = _Running(pid, ssh_port, watcher, metadata)
        with self._lock:
            self._running[server_id] = running
        watcher.start()

    def _abort(self, files: MachineFiles, pid: int) -> None:
        """End a QEMU that did not come up as it should (and the watcher, if it began)."""
        with self._lock:
            running = self._running.get(files.server_id)
        if running is not None:
            running.watcher.stopping = True
        kill(pid, files)
        wait_gone(pid, files)
        if running is not None:
            running.watcher.ended.wait(END_SECONDS)
        files.forget_run()

    def _reattach(self, files: MachineFiles) -> None:
        """Follow the server's QEMU again if it lives (else forget what it left)."""
        run = files.load_run() if files.exists() else None
        pid = qemu_pid(files, run.pid if run is not None else None)
        if run is None or pid is None:
            self._kill_strays(files)
            if files.exists():
                files.forget_run()
                files.remove_sockets()
            return
        try:
            tree = MetadataTree.read(files.metadata)
            metadata = self._metadata_service(files, tree, run_as(self.settings.server_user))
        except MachineError as exc:
            log.error(
                "server %s: cannot serve its metadata again (%s): stopping it", files.server_id, exc
            )
            kill(pid, files)
            wait_gone(pid, files)
            files.forget_run()
            return
        try:
            serial = connect(files.serial, 5.0)
        except OSError as exc:
            metadata.close()
            log.error(
                "server %s: its console does not answer (%s): stopping it", files.server_id, exc
            )
            kill(pid, files)
            wait_gone(pid, files)
            files.forget_run()
            return
        self._follow(files, pid, run.ssh_port, serial, metadata)
        log.info("server %s: re-attached to its QEMU (pid %d)", files.server_id, pid)

    # -- helpers ---------------------------------------------------------------------------------

    def _write_metadata(self, files: MachineFiles, spec: MachineSpec) -> MetadataTree:
        tree = MetadataTree(spec.metadata)
        tree.write(files.metadata)
        if spec.config_drive:
            make_config_drive(self.xorriso, files.metadata, files.config_drive)
        else:
            files.config_drive.unlink(missing_ok=True)
        return tree

    def _metadata_service(
        self, files: MachineFiles, tree: MetadataTree, user: RunAs | None
    ) -> MetadataService:
        peers = frozenset({user.uid if user is not None else os.geteuid()})
        service = MetadataService(socket_name(self.servers_dir, files.server_id), tree, peers)
        service.start()
        return service

    def _accelerator(self) -> str:
        wanted = self.settings.server_accelerator
        if wanted == "auto":
            return usable_accelerator(self.qemu)
        if wanted not in ("kvm", "tcg"):
            raise MachineError(f"server_accelerator is {wanted!r}: kvm, tcg or auto")
        return wanted

    def _ovmf(self) -> Ovmf:
        try:
            return find_ovmf(self.ovmf_pairs)
        except BootError as exc:
            raise MachineError(str(exc)) from exc

    def _qmp(
        self, files: MachineFiles, command: str, arguments: dict[str, Any] | None = None
    ) -> Any:
        try:
            sock = connect(files.qmp, 5.0)
        except OSError as exc:
            raise MachineError(f"QEMU's machine protocol does not answer: {exc}") from exc
        qmp = None
        try:
            qmp = Qmp(sock, error=MachineError)
            return qmp.execute(command, arguments)
        finally:
            if qmp is not None:
                qmp.close()
            else:
                sock.close()

    def _running_machine(self, server_id: str) -> _Running:
        checked_id(server_id)
        with self._lock:
            running = self._running.get(server_id)
        if running is None:
            raise MachineError("the machine is off")
        return running

    def _kill_strays(self, files: MachineFiles) -> None:
        """Kill any QEMU of this server that the host does not follow (none, normally)."""
        for pid, server_id in all_server_qemus(self.servers_dir).items():
            if server_id == files.server_id:
                log.warning("server %s: killing a QEMU nobody followed (pid %d)", server_id, pid)
                kill(pid, files)
                wait_gone(pid, files)

    @contextlib.contextmanager
    def _exclusive(self, server_id: str) -> Iterator[None]:
        with self._lock:
            lock = self._busy.setdefault(server_id, threading.Lock())
        with lock:
            yield


def _check_spec(spec: MachineSpec) -> None:
    checked_id(spec.server_id)
    problems = []
    if spec.firmware not in FIRMWARES:
        problems.append(f"firmware {spec.firmware!r} (bios or uefi)")
    if spec.image_format not in QEMU_DRIVERS:
        problems.append(
            f"image format {spec.image_format!r} (QEMU reads {', '.join(QEMU_DRIVERS)})"
        )
    if not 1 <= spec.vcpus <= MAX_VCPUS:
        problems.append(f"{spec.vcpus} vCPUs (1 to {MAX_VCPUS})")
    if not MIN_MEMORY_MIB <= spec.memory_mib <= MAX_MEMORY_MIB:
        problems.append(f"{spec.memory_mib} MiB of memory ({MIN_MEMORY_MIB} to {MAX_MEMORY_MIB})")
    if not 0 < spec.disk_bytes <= MAX_DISK_BYTES or spec.disk_bytes % 512:
        problems.append(f"a disk of {spec.disk_bytes} bytes (sectors, up to {MAX_DISK_BYTES})")
    if not _MAC.fullmatch(spec.mac):
        problems.append(f"MAC address {spec.mac[:40]!r} (unicast, lower-case hex)")
    if not spec.image.is_file():
        problems.append(f"image {spec.image} (not a file)")
    if problems:
        raise MachineError("cannot make a machine with " + "; ".join(problems))
