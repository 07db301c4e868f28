"""A server host that runs no virtual machine (the ``ServerHost`` port).

Machines are entries in a dictionary: :meth:`FakeServerHost.start` marks one running with a
made-up SSH port, :meth:`~FakeServerHost.stop` marks it off. What a test needs to see is
recorded: every call in :attr:`FakeServerHost.calls`, the spec each machine was made with in
:attr:`FakeServerHost.specs` (so a test reads the metadata a guest would have received).
:meth:`~FakeServerHost.copy_disk` writes a tiny real file (``FAKE-COPY``); a test of a job that
converts a copy puts a real overlay there instead with :attr:`copy_maker`. A test makes a
machine end by itself with :meth:`~FakeServerHost.guest_powered_off` (the ``on_stopped``
callback runs, as the real host's watcher calls it). :attr:`fail` makes the next call of a
method raise :class:`~imageport.service.ports.MachineError`.

Consoles: :meth:`~FakeServerHost.attach_console` hands out a :class:`FakeConsole` (kept in
:attr:`~FakeServerHost.consoles`) that first prints :attr:`~FakeServerHost.console_greeting`,
then whatever a test makes the guest print with :meth:`~FakeServerHost.guest_prints`, and
records what was typed (echoing it back when :attr:`~FakeServerHost.console_echo` is set, as a
guest's terminal does); its reads wait up to their timeout and fail once the machine is off.
:meth:`~FakeServerHost.vnc_socket` answers the path a test put in
:attr:`~FakeServerHost.vnc_sockets` (a unix socket it serves), else a path where nothing is.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from imageport.service.ports import (
    ConsoleSession,
    DiskCopy,
    MachineError,
    MachineSpec,
    MachineState,
)


@dataclass
class _Machine:
    spec: MachineSpec
    running: bool = False
    ssh_port: int | None = None
    console: list[str] = field(default_factory=list)


class FakeConsole:
    def __init__(self, machine: _Machine, *, echo: bool = False) -> None:
        self._machine = machine
        self._echo = echo
        self._output: queue.Queue[bytes] = queue.Queue()
        self._lock = threading.Lock()
        self.typed = b""
        self.closed = False

    def read(self, timeout: float) -> bytes:
        if not self._machine.running:
            raise MachineError("the machine is off")
        try:
            chunks = [self._output.get(timeout=timeout)]
        except queue.Empty:
            return b""
        with contextlib.suppress(queue.Empty):
            while True:
                chunks.append(self._output.get_nowait())
        return b"".join(chunks)

    def write(self, data: bytes) -> None:
        with self._lock:
            self.typed += data
        if self._echo:
            self._output.put(data)

    def close(self) -> None:
        self.closed = True

    def prints(self, data: bytes) -> None:
        """The guest prints ``data`` on this console."""
        self._output.put(data)


class FakeServerHost:
    def __init__(self, on_stopped: Callable[[str], None] | None = None) -> None:
        self.on_stopped = on_stopped
        self.machines: dict[str, _Machine] = {}
        self.specs: dict[str, MachineSpec] = {}
        self.calls: list[tuple[str, str]] = []
        #: method name -> message: the next call of that method raises MachineError
        self.fail: dict[str, str] = {}
        #: writes the copy's top file (default: a few bytes); tests of conversions set it
        self.copy_maker: Callable[[MachineSpec, Path], None] | None = None
        #: server id -> the unix socket :meth:`vnc_socket` answers (a test serves it)
        self.vnc_sockets: dict[str, Path] = {}
        #: every console attached, in order; each prints the greeting first
        self.consoles: list[FakeConsole] = []
        self.console_greeting = b""
        self.console_echo = False
        self._ports = itertools.count(22000)

    def _call(self, method: str, server_id: str) -> None:
        self.calls.append((method, server_id))
        if method in self.fail:
            raise MachineError(self.fail.pop(method))

    def _machine(self, server_id: str) -> _Machine:
        machine = self.machines.get(server_id)
        if machine is None:
            raise MachineError(f"no machine for server {server_id}")
        return machine

    def ready(self) -> None:
        self._call("ready", "")

    def create(self, spec: MachineSpec) -> None:
        self._call("create", spec.server_id)
        self.machines[spec.server_id] = _Machine(spec)
        self.specs[spec.server_id] = spec

    def start(self, spec: MachineSpec) -> MachineState:
        self._call("start", spec.server_id)
        machine = self._machine(spec.server_id)
        machine.spec = spec
        machine.running = True
        machine.ssh_port = next(self._ports)
        machine.console.append("imageport-guest login: ")
        return self.state(spec.server_id)

    def state(self, server_id: str) -> MachineState:
        machine = self.machines.get(server_id)
        if machine is None or not machine.running:
            return MachineState(server_id, running=False)
        return MachineState(server_id, running=True, ssh_port=machine.ssh_port, pid=4242)

    def stop(self, server_id: str, *, hard: bool, timeout: float) -> None:
        self._call("stop-hard" if hard else "stop", server_id)
        machine = self._machine(server_id)
        machine.running = False
        machine.ssh_port = None

    def reboot(self, server_id: str, *, hard: bool) -> None:
        self._call("reboot-hard" if hard else "reboot", server_id)
        if not self._machine(server_id).running:
            raise MachineError("the machine is off")

    def destroy(self, server_id: str) -> None:
        self._call("destroy", server_id)
        self.machines.pop(server_id, None)

    def console_output(self, server_id: str, lines: int | None) -> str:
        self._call("console_output", server_id)
        kept = self._machine(server_id).console
        return "\n".join(kept if lines is None else kept[-lines:] if lines > 0 else [])

    def attach_console(self, server_id: str) -> ConsoleSession:
        self._call("attach_console", server_id)
        machine = self._machine(server_id)
        if not machine.running:
            raise MachineError("the machine is off")
        console = FakeConsole(machine, echo=self.console_echo)
        if self.console_greeting:
            console.prints(self.console_greeting)
        self.consoles.append(console)
        return console

    def vnc_socket(self, server_id: str) -> Path:
        self._call("vnc_socket", server_id)
        if not self._machine(server_id).running:
            raise MachineError("the machine is off")
        return self.vnc_sockets.get(server_id, Path(f"/nonexistent/{server_id}/vnc.sock"))

    def copy_disk(self, server_id: str, target_dir: Path) -> DiskCopy:
        self._call("copy_disk", server_id)
        machine = self._machine(server_id)
        top = target_dir / f"{server_id}-copy.qcow2"
        if self.copy_maker is not None:
            self.copy_maker(machine.spec, top)
        else:
            top.write_bytes(b"FAKE-COPY")
        return DiskCopy(
            top=top,
            base=machine.spec.image,
            base_format=machine.spec.image_format,
            virtual_size=machine.spec.disk_bytes,
        )

    def discard_copy(self, copy: DiskCopy) -> None:
        copy.top.unlink(missing_ok=True)

    def close(self) -> None:
        self._call("close", "")

    def recover(self, known: Sequence[str]) -> dict[str, MachineState]:
        self._call("recover", "")
        for server_id in [s for s in self.machines if s not in known]:
            del self.machines[server_id]
        return {server_id: self.state(server_id) for server_id in known}

    # -- what tests do to a machine ---------------------------------------------------------

    def guest_prints(self, server_id: str, data: bytes) -> None:
        """The guest prints ``data`` on its serial console: every open console of it reads it."""
        machine = self._machine(server_id)
        for console in self.consoles:
            if console._machine is machine and not console.closed:
                console.prints(data)

    def guest_powered_off(self, server_id: str) -> None:
        """The guest shut itself down: the machine ends and ``on_stopped`` hears of it."""
        machine = self._machine(server_id)
        machine.running = False
        machine.ssh_port = None
        if self.on_stopped is not None:
            self.on_stopped(server_id)
